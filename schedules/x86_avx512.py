"""x86-64 AVX-512 + VNNI family: the micro-kernel step is one `vpdpbusd` per k-group and 16
channels (u8 x s8, 4 products summed into each int32 lane), int32 register accumulators.

TVM 0.27's stock `dot_16x4_vnni` fails LLVM verification (LLVM 22 types the vpdpbusd.512
operands as <64 x i8>), so this module calls the LLVM intrinsic with those types itself.
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from . import x86

TILE_N = 16
MAX_KGROUPS = 64  # int32 cannot overflow; the bound only keeps a chunk of unpacked weights in L1
ROWS, VECS = 8, 3  # up to 24 accumulators + 3 weight vectors + 1 broadcast of 32 zmm registers


def _dpbusd(acc, x4, w):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), acc,
                                   T.reinterpret(T.broadcast(x4, 16), dtype="int8x64"), w, dtype="int32x16")


def _identity(acc):
    return acc


KERNEL = x86.BlockKernel("edgeclip_vnni_block", TILE_N, "int32x16", MAX_KGROUPS, ROWS, VECS,
                         _dpbusd, _identity)


def target(threads: int = 1, mcpu: str = "cascadelake") -> tvm.target.Target:
    """An AVX-512 VNNI CPU (Cascade Lake and later; Zen 4 works too)."""
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": threads})


def linear_primfunc(M: int, K: int, N: int, scale_kind: str = "channel", act: str = "int8",
                    threads: int = 1, bias: bool = True):
    """Scheduled PrimFunc of the ternary linear for this family (parameters: see ternary.py)."""
    return x86.schedule_linear(M, K, N, scale_kind, act, threads, bias, KERNEL)
