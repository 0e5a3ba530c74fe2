"""x86-64 AVX2 family (no VNNI, e.g. Haswell, Zen 1-3).

Micro-kernel step per k-group and 8 channels: `vpbroadcastd` 4 activation bytes (shared by
`vecs` products), `vpmaddubsw` u8 x s8 -> pairs summed to int16 (|u| <= 255, |t| <= 1, so a pair
is <= 510: no saturation), `vpaddw` into an int16 register accumulator. Every `max_kgroups`
k-groups the accumulator is widened with `vpmaddwd` by 1 (adjacent int16 pairs -> int32) and
added to the int32 sum: 2 vector ops per 32 multiply-adds instead of 3 for int32 accumulation.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from . import x86
from .family import KernelFamily
from .ternary import LinearShape

__all__ = ["FAMILY", "linear_primfunc", "pack_weights"]

_TILE_N = 8
#: int16 lanes gain at most 2 * 255 per k-group: 64 * 510 = 32640 <= 32767.
_MAX_KGROUPS = 32767 // (2 * 255)
_ROWS, _VECS = 6, 2  # up to 12 accumulators + 2 weight vectors + 1 broadcast of 16 ymm registers


def _maddubs_add(acc, x4, w):
    pairs = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                                    T.reinterpret(T.broadcast(x4, 8), dtype="int8x32"), w, dtype="int16x16")
    return acc + pairs


def _widen(acc):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), acc,
                                   T.broadcast(T.int16(1), 16), dtype="int32x8")


FAMILY = KernelFamily(
    "x86_avx2", tile_n=_TILE_N, act_offset=128, always_bias=False,
    micro_kernel=x86.BlockKernel("edgeclip_avx2_block", _TILE_N, "int16x16", _MAX_KGROUPS, _ROWS, _VECS,
                                 _maddubs_add, _widen),
)


def linear_primfunc(spec: LinearShape, threads: int) -> tirx.PrimFunc:
    """Scheduled PrimFunc of the ternary linear (parameters: see ternary.py); parallel over N
    tiles when threads > 1."""
    return x86.schedule_linear(FAMILY, spec, threads)


def pack_weights(trits: np.ndarray, act: str) -> list[np.ndarray]:
    """Weight operands in parameter order: int8 [w_packed, w_sum], fp32 [w_packed]."""
    return FAMILY.weight_operands(trits, act)
