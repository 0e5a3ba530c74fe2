"""What lowering takes from `edgeclip.schedules`: the target's kernel family, and the
family-independent embedding gather.

Every family exports the same interface (`edgeclip.schedules.family`): lowering calls its
`linear_primfunc` / `pack_weights` and reads its `FAMILY` descriptor, never its name.
"""

from __future__ import annotations

from types import ModuleType

from edgeclip.errors import KernelError
from edgeclip.lower.target import LowerTarget
from edgeclip.schedules.family import load_family
from edgeclip.schedules.ternary import ACT_MODES, embedding_prim_func

ACTS = ACT_MODES  # the activation modes `compile` and `tune` accept


def family(target: LowerTarget) -> ModuleType:
    """The kernel family module of `target`'s board, refusing one scheduled for another kind of
    TVM target than the board's CPU (the CUDA family is not wired into whole-model lowering)."""
    module = load_family(target.family)
    kind = target.tvm_target["kind"]
    if module.FAMILY.target_kind != kind:
        raise KernelError(f"the {target.family} family schedules {module.FAMILY.target_kind} kernels, but "
                          f"{target.name} lowers for {kind}; give the board a family for its CPU")
    return module


def embedding_kernel(n_ids: int, vocab: int, dim: int):
    """Gather of 2-bit packed rows with one scale per row (family independent: memory bound)."""
    return embedding_prim_func(n_ids, vocab, dim, per_row_scale=True).with_attr("tirx.is_scheduled", True)

