"""x86-64 AVX-512 + VNNI family: the 16x4 u8 x s8 -> s32 product is one `vpdpbusd`.

TVM 0.27's stock `dot_16x4_vnni` fails LLVM verification (LLVM 22 types the vpdpbusd.512
operands as <64 x i8>), so this module registers a corrected intrinsic whose accumulator
lives in local scope (registers after unrolling the row block).
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from . import x86
from .ternary import LinearSpec

TILE_N = 16
INTRIN = "edgeclip_dot_16x4_vnni"


@T.prim_func(s_tir=True)
def _vnni_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a_i8x64 = T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"),
            a_i8x64,
            B.vload([0, 0], dtype="int8x64"),
            dtype="int32x16",
        )


def target(threads: int = 1, mcpu: str = "cascadelake") -> tvm.target.Target:
    """An AVX-512 VNNI CPU (Cascade Lake and later; Zen 4 works too)."""
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": threads})


def linear_primfunc(M: int, K: int, N: int, scale_kind: str = "channel", act: str = "int8",
                    threads: int = 1, bias: bool = True):
    """Scheduled PrimFunc of the ternary linear for this family (parameters: see ternary.py)."""
    spec = LinearSpec(M, K, N, scale_kind, act, TILE_N, bias)
    intrin = x86.register_intrin(INTRIN, TILE_N, _vnni_impl) if act == "int8" else None
    return x86.schedule_linear(spec, intrin, threads)
