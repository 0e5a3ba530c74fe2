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
from edgeclip.schedules.ternary import ACT_MODES, embedding_prim_func, embedding_te

ACTS = ACT_MODES  # the activation modes `compile` and `tune` accept


def family(target: LowerTarget) -> ModuleType:
    """The kernel family module of `target` (the board's CPU family, or `cuda` for its GPU),
    refusing one scheduled for another kind of TVM target than the one lowered for."""
    module = load_family(target.family)
    kind = target.tvm_target["kind"]
    if module.FAMILY.target_kind != kind:
        raise KernelError(f"the {target.family} family schedules {module.FAMILY.target_kind} kernels, but "
                          f"{target.name} lowers for {kind}; give the board a family for its CPU")
    return module


def embedding_kernel(n_ids: int, vocab: int, dim: int, target: LowerTarget):
    """Gather of 2-bit packed rows with one scale per row (family independent: memory bound).
    On a GPU it is left unscheduled: the graph's GPU rules bind it to threads like any gather."""
    if target.device == "cpu":
        return embedding_prim_func(n_ids, vocab, dim, per_row_scale=True).with_attr("tirx.is_scheduled", True)
    from tvm import te

    params, out = embedding_te(n_ids, vocab, dim, per_row_scale=True)
    return te.create_prim_func(params + [out])

