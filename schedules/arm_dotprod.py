"""ARMv8.2-A with the dot-product extension (Cortex-A76: Raspberry Pi 5; Cortex-A78AE: Jetson
Orin CPU): int8 activations x unpacked ternary weights, 4x4 blocks tensorized with SDOT."""

from __future__ import annotations

import numpy as np
from tvm import tirx

from . import arm_common
from .ternary import pack_weights as _pack_shared

TILE_N = arm_common.TILE_N


def target(mcpu: str = "cortex-a76", num_cores: int | None = None) -> dict:
    """TVM target dict; `mcpu` is the board's core (cortex-a76, cortex-a78ae, ...)."""
    return arm_common.aarch64_target(mcpu, ["+neon", "+dotprod"], num_cores)


def linear_primfunc(M: int, K: int, N: int, scale_kind: str = "channel", act: str = "int8") -> tirx.PrimFunc:
    """Scheduled PrimFunc `ternary_linear(x, w_packed, scale, [bias,] y)` (see ternary.py)."""
    spec = arm_common.arm_spec(M, K, N, scale_kind, act)
    return arm_common.schedule_linear(spec, arm_common.DOT_4X4_SDOT)


def pack_weights(T: np.ndarray) -> np.ndarray:
    """Ternary int8[N, K] -> the packed uint8 weights this family's kernel reads."""
    return _pack_shared(T, TILE_N)["w_packed"]
