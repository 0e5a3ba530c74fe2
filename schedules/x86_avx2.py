"""x86-64 AVX2 family (no VNNI, e.g. Haswell, Zen 1-3).

Micro-kernel step per k-group and 8 channels: `vpbroadcastd` 4 activation bytes (shared by
`vecs` products), `vpmaddubsw` u8 x s8 -> pairs summed to int16 (|u| <= 255, |t| <= 1, so a pair
is <= 510: no saturation), `vpaddw` into an int16 register accumulator. Every `MAX_KGROUPS`
k-groups the accumulator is widened with `vpmaddwd` by 1 (adjacent int16 pairs -> int32) and
added to the int32 sum: 2 vector ops per 32 multiply-adds instead of 3 for int32 accumulation.
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from . import x86

TILE_N = 8
#: int16 lanes gain at most 2 * 255 per k-group: 64 * 510 = 32640 <= 32767.
MAX_KGROUPS = 32767 // (2 * 255)
ROWS, VECS = 6, 2  # up to 12 accumulators + 2 weight vectors + 1 broadcast of 16 ymm registers


def _maddubs_add(acc, x4, w):
    pairs = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                                    T.reinterpret(T.broadcast(x4, 8), dtype="int8x32"), w, dtype="int16x16")
    return acc + pairs


def _widen(acc):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), acc,
                                   T.broadcast(T.int16(1), 16), dtype="int32x8")


KERNEL = x86.BlockKernel("edgeclip_avx2_block", TILE_N, "int16x16", MAX_KGROUPS, ROWS, VECS,
                         _maddubs_add, _widen)


def target(threads: int = 1, mcpu: str = "haswell") -> tvm.target.Target:
    """Any AVX2 CPU; haswell keeps the code free of AVX-512 so it runs on every AVX2 host."""
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": threads})


def linear_primfunc(M: int, K: int, N: int, scale_kind: str = "channel", act: str = "int8",
                    threads: int = 1, bias: bool = True):
    """Scheduled PrimFunc of the ternary linear for this family (parameters: see ternary.py)."""
    return x86.schedule_linear(M, K, N, scale_kind, act, threads, bias, KERNEL)
