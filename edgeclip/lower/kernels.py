"""The ternary kernels of a target's family, behind one small interface the rewrite pass uses.

A family in `edgeclip.schedules` provides a scheduled `linear_primfunc` and a weight packing; this
module hides their differing signatures (x86 takes `threads`/`bias` and a weight-sum vector for
its uint8 activations; the ARM families use signed int8 activations, no weight sum, and always
take a bias) so the rewrite never branches on the family.
"""

from __future__ import annotations

import importlib

import numpy as np

from edgeclip.errors import KernelError
from edgeclip.lower.target import LowerTarget

ACTS = ("int8", "fp32")
X86_FAMILIES = ("x86_avx512", "x86_avx2")
ARM_FAMILIES = ("arm_neon", "arm_dotprod")


def _family(target: LowerTarget):
    return importlib.import_module(f"edgeclip.schedules.{target.family}")


def takes_bias(target: LowerTarget, has_bias: bool) -> bool:
    """Whether the family's kernel has a bias parameter (the rewrite passes zeros if the layer has none)."""
    return has_bias or target.family in ARM_FAMILIES


def linear_kernel(target: LowerTarget, M: int, K: int, N: int, act: str, bias: bool):
    """Scheduled PrimFunc y[M, N] = ternary_linear(x[M, K]) with per-channel scales."""
    if act not in ACTS:
        raise KernelError(f"activation mode {act!r} unknown; use one of {ACTS}")
    if target.family in X86_FAMILIES:
        func = _family(target).linear_primfunc(M, K, N, "channel", act, target.threads, bias)
    elif target.family in ARM_FAMILIES:
        func = _family(target).linear_primfunc(M, K, N, "channel", act)
    else:
        raise KernelError(
            f"the {target.family} family is not wired into whole-model lowering; "
            f"use a target of the {', '.join(X86_FAMILIES + ARM_FAMILIES)} families"
        )
    return func.with_attr("tirx.is_scheduled", True)


def linear_weights(target: LowerTarget, trits: np.ndarray, act: str) -> list[np.ndarray]:
    """Weight operands in the kernel's parameter order (before scale and bias); the 2-bit packed
    weights come first, then any per-channel extras (the int8 path's weight sums)."""
    family = _family(target)
    if target.family in ARM_FAMILIES:
        return [family.pack_weights(trits)]  # s8 x s8 (act_offset=0): no weight-sum compensation
    from edgeclip.schedules.ternary import pack_weights

    packed = pack_weights(trits, family.TILE_N)
    return [packed["w_packed"], packed["w_sum"]] if act == "int8" else [packed["w_packed"]]


def embedding_kernel(n_ids: int, vocab: int, dim: int):
    """Gather of 2-bit packed rows with one scale per row (family independent: memory bound)."""
    from edgeclip.schedules.ternary import embedding_prim_func

    return embedding_prim_func(n_ids, vocab, dim, per_row_scale=True).with_attr("tirx.is_scheduled", True)


def embedding_rows(trits: np.ndarray) -> np.ndarray:
    from edgeclip.schedules.ternary import pack_embedding

    return pack_embedding(trits)
