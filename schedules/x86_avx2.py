"""x86-64 AVX2 family (no VNNI, e.g. Haswell, Zen 1-3): the 8x4 u8 x s8 -> s32 product is
`vpmaddubsw` (pairs to int16; cannot saturate since |w| <= 1) + `vpmaddwd` by 1 (to int32).
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from . import x86
from .ternary import LinearSpec

TILE_N = 8
INTRIN = "edgeclip_dot_8x4_avx2"


@T.prim_func(s_tir=True)
def _avx2_impl(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((8, 4), "int8", offset_factor=1),
    C: T.Buffer((8,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:4], B[0:8, 0:4])
        T.writes(C[0:8])
        a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
        a_u8x32 = T.reinterpret(T.broadcast(a_i32, 8), dtype="int8x32")
        pairs = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
            a_u8x32,
            B.vload([0, 0], dtype="int8x32"),
            dtype="int16x16",
        )
        C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
            pairs,
            T.broadcast(T.int16(1), 16),
            dtype="int32x8",
        )


def target(threads: int = 1, mcpu: str = "haswell") -> tvm.target.Target:
    """Any AVX2 CPU; haswell keeps the code free of AVX-512 so it runs on every AVX2 host."""
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": threads})


def linear_primfunc(M: int, K: int, N: int, scale_kind: str = "channel", act: str = "int8",
                    threads: int = 1, bias: bool = True):
    """Scheduled PrimFunc of the ternary linear for this family (parameters: see ternary.py)."""
    spec = LinearSpec(M, K, N, scale_kind, act, TILE_N, bias)
    intrin = x86.register_intrin(INTRIN, TILE_N, _avx2_impl) if act == "int8" else None
    return x86.schedule_linear(spec, intrin, threads)
