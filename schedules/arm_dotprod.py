"""ARMv8.2-A with the dot-product extension (Cortex-A76: Raspberry Pi 5; Cortex-A78AE: Jetson
Orin CPU): int8 activations x unpacked ternary weights, 4x4 blocks tensorized with SDOT."""

from __future__ import annotations

import numpy as np
from tvm import tirx

from . import arm_common
from .family import KernelFamily
from .ternary import LinearShape

__all__ = ["FAMILY", "linear_primfunc", "pack_weights"]

FAMILY = KernelFamily("arm_dotprod", tile_n=arm_common.TILE_N, act_offset=0, always_bias=True)


def linear_primfunc(spec: LinearShape, threads: int) -> tirx.PrimFunc:
    """Scheduled PrimFunc `ternary_linear(x, w_packed, scale, bias, y)` (see ternary.py); always
    parallel over N tiles, so `threads` changes nothing (the runtime's pool sets the count)."""
    return arm_common.schedule_linear(FAMILY, spec, arm_common.DOT_4X4_SDOT)


def pack_weights(trits: np.ndarray, act: str) -> list[np.ndarray]:
    """Weight operands in parameter order: [w_packed] (s8 x s8 needs no weight sums)."""
    return FAMILY.weight_operands(trits, act)
