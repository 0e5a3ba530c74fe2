"""The one interface every kernel family module in `edgeclip.schedules` exports.

A family module (named by a board TOML's `kernel_family`) defines exactly:

    FAMILY                             a `KernelFamily`: the facts callers need (no board facts:
                                       targets, CPUs and core counts live in targets/*.toml)
    linear_primfunc(spec, threads)     the scheduled PrimFunc of the `ternary.LinearShape` `spec`,
                                       parameters `x, <weight operands>, scale, [bias,] y`
    pack_weights(trits, act)           ternary int8[N, K] -> the weight operands, in that order

so lowering, tuning and tests never branch on a family's name: they read `FAMILY` instead.
`load_family(name)` is the lookup.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from edgeclip.errors import KernelError

from .ternary import ACT_MODES, LinearShape, LinearSpec, pack_weights

if TYPE_CHECKING:
    from .x86 import BlockKernel

#: Every family module; a board TOML's `kernel_family` names one of the CPU ones.
FAMILIES = ("x86_avx2", "x86_avx512", "arm_neon", "arm_dotprod", "cuda")


@dataclass(frozen=True)
class KernelFamily:
    """What a family's kernels need from, and promise to, their callers."""

    name: str  # the module name under edgeclip.schedules
    tile_n: int  # output channels per packed weight tile (the layout `pack_weights` writes)
    act_offset: int  # int8 mode: 128 = uint8 activations (u8 x s8, weight sums follow the
    #                  packed weights), 0 = int8 activations (s8 x s8, no weight sums)
    always_bias: bool  # the kernel takes a bias even for a layer without one (pass zeros)
    target_kind: str = "llvm"  # the TVM target kind the kernels are scheduled for
    micro_kernel: BlockKernel | None = None  # x86: the register-blocked micro-kernel whose knobs
    #                                          `edgeclip tune --kernels` searches; None: no knobs

    @property
    def tunable(self) -> bool:
        """Whether the int8 kernel has knobs to tune (`edgeclip.lower.knobs`)."""
        return self.micro_kernel is not None

    def spec(self, shape: LinearShape, row_block: int = 1, packed: bool = True) -> LinearSpec:
        """The computation this family schedules for `shape` (its tile, offset and row padding)."""
        if self.always_bias and not shape.bias:
            raise KernelError(f"the {self.name} kernel always takes a bias: describe the linear with bias=True "
                              "and pass zeros for a layer without one")
        return LinearSpec(shape.M, shape.K, shape.N, shape.scale_kind, shape.act, tile_n=self.tile_n,
                          bias=shape.bias, act_offset=self.act_offset, row_block=row_block, packed=packed)

    def weight_operands(self, trits: np.ndarray, act: str) -> list[np.ndarray]:
        """The 2-bit packed weights, then the weight sums when the int8 kernel needs them."""
        if act not in ACT_MODES:
            raise KernelError(f"activation mode {act!r} unknown; use one of {ACT_MODES}")
        packed = pack_weights(trits, self.tile_n)
        if act == "int8" and self.act_offset:
            return [packed["w_packed"], packed["w_sum"]]
        return [packed["w_packed"]]


def load_family(name: str) -> ModuleType:
    """The family module called `name` (e.g. a board's `kernel_family`)."""
    if name not in FAMILIES:
        raise KernelError(f"unknown kernel family {name!r}; known: {', '.join(FAMILIES)} "
                          "(a board TOML's kernel_family must name one)")
    return importlib.import_module(f"{__package__}.{name}")
