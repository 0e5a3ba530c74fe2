"""The model families edgeclip knows: one module each in this folder, exporting `FAMILY` (a
`base.ModelFamily`). Adding a family is adding a module; nothing else names families.

The modules are found when first asked for, not at import, so a family module may use helpers
that themselves import `base`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from torch import nn

from edgeclip.errors import ModelError
from edgeclip.models.families.base import ModelFamily

_NOT_FAMILIES = {"base"}


@functools.cache
def all_families() -> dict[str, ModelFamily]:
    """Every family, by the name checkpoints and manifests record."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name not in _NOT_FAMILIES:
            family = importlib.import_module(f"{__name__}.{info.name}").FAMILY
            found[family.name] = family
    return found


def family(name: str) -> ModelFamily:
    families = all_families()
    if name not in families:
        raise ModelError(f"unknown model family {name!r}; this edgeclip knows {', '.join(families)}")
    return families[name]


def family_of(model: nn.Module) -> ModelFamily:
    """The family a loaded model belongs to."""
    for candidate in all_families().values():
        if candidate.recognises(model):
            return candidate
    known = ", ".join(f.model_type.__name__ for f in all_families().values())
    raise ModelError(f"{type(model).__name__} is not a model edgeclip knows; pass a {known} or a checkpoint")


def model_towers(model: nn.Module, batch: int = 1, seq_len: int | None = None) -> dict:
    """The towers of a loaded model ({name: Tower}); text towers padded to `seq_len` (default:
    the family's context)."""
    return family_of(model).towers(model, batch, seq_len)
