"""x86-64 AVX-512 + VNNI family: the micro-kernel step is one `vpdpbusd` per k-group and 16
channels (u8 x s8, 4 products summed into each int32 lane), int32 register accumulators.

TVM 0.27's stock `dot_16x4_vnni` fails LLVM verification (LLVM 22 types the vpdpbusd.512
operands as <64 x i8>), so this module calls the LLVM intrinsic with those types itself.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.script import tirx as T

from . import x86
from .family import KernelFamily
from .ternary import LinearShape

__all__ = ["FAMILY", "linear_primfunc", "pack_weights"]

_TILE_N = 16
_MAX_KGROUPS = 64  # int32 cannot overflow; the bound only keeps a chunk of unpacked weights in L1
_ROWS, _VECS = 8, 3  # up to 24 accumulators + 3 weight vectors + 1 broadcast of 32 zmm registers


def _dpbusd(acc, x4, w):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), acc,
                                   T.reinterpret(T.broadcast(x4, 16), dtype="int8x64"), w, dtype="int32x16")


def _identity(acc):
    return acc


FAMILY = KernelFamily(
    "x86_avx512", tile_n=_TILE_N, act_offset=128, always_bias=False,
    micro_kernel=x86.BlockKernel("edgeclip_vnni_block", _TILE_N, "int32x16", _MAX_KGROUPS, _ROWS, _VECS,
                                 _dpbusd, _identity),
)


def linear_primfunc(spec: LinearShape, threads: int) -> tirx.PrimFunc:
    """Scheduled PrimFunc of the ternary linear (parameters: see ternary.py); parallel over N
    tiles when threads > 1."""
    return x86.schedule_linear(FAMILY, spec, threads)


def pack_weights(trits: np.ndarray, act: str) -> list[np.ndarray]:
    """Weight operands in parameter order: int8 [w_packed, w_sum], fp32 [w_packed]."""
    return FAMILY.weight_operands(trits, act)
