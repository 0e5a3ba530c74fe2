"""`quantize(model, config, filter_fn)`: swap float layers for ternary ones in place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from torch import nn

from edgeclip.errors import QuantError
from edgeclip.quant.layers import TERNARY_TYPES, TernaryWeight
from edgeclip.quant.policy import layer_role, policy_roles
from edgeclip.quant.ternarize import DEFAULT_BETA, DEFAULT_GRANULARITY, Granularity, rows_per_scale

FilterFn = Callable[[nn.Module, str], bool]


@dataclass(frozen=True)
class TernaryConfig:
    """How to ternarize: which layers (policy, skip), and how (granularity, beta, STE clip, and
    whether training learns the scales or keeps them at beta * mean|W|)."""

    policy: str = "q-all"
    granularity: Granularity = DEFAULT_GRANULARITY
    beta: float = DEFAULT_BETA
    clip: float = 2.0
    skip: tuple[str, ...] = ()
    learn_scales: bool = False

    def to_dict(self) -> dict:
        data = asdict(self)
        data["granularity"] = list(self.granularity) if isinstance(self.granularity, tuple) else self.granularity
        data["skip"] = list(self.skip)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TernaryConfig:
        granularity = data.get("granularity", DEFAULT_GRANULARITY)
        return cls(
            policy=data.get("policy", "q-all"),
            granularity=tuple(granularity) if isinstance(granularity, list) else granularity,
            beta=float(data.get("beta", DEFAULT_BETA)),
            clip=float(data.get("clip", 2.0)),
            skip=tuple(data.get("skip", ())),
            learn_scales=bool(data.get("learn_scales", False)),
        )


@dataclass
class QuantReport:
    """What `quantize` changed: layer name -> role, and the layers it left alone on purpose."""

    quantized: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        roles: dict[str, int] = {}
        for role in self.quantized.values():
            roles[role] = roles.get(role, 0) + 1
        summary = ", ".join(f"{count} {role}" for role, count in sorted(roles.items()))
        return f"ternarized {len(self.quantized)} layers ({summary}); skipped {len(self.skipped)}"


def _granularity_for(module: nn.Module, granularity: Granularity) -> Granularity:
    """Group granularity applies to layers whose rows it divides; others fall back to per-channel."""
    if isinstance(granularity, tuple):
        try:
            rows_per_scale(granularity, module.weight.shape[0])
        except QuantError:
            return "channel"
    return granularity


def quantize(model: nn.Module, config: TernaryConfig = TernaryConfig(), filter_fn: FilterFn | None = None) -> QuantReport:
    """Replace every layer the policy selects (and `filter_fn` accepts) with its ternary twin."""
    roles = policy_roles(config.policy)
    report = QuantReport()
    targets = []
    for name, module in model.named_modules():
        if isinstance(module, TernaryWeight):
            raise QuantError(f"{name} is already ternary; quantize a float model")
        role = layer_role(name, module)
        if role is None or role not in roles:
            continue
        if any(name == s or name.startswith(s + ".") for s in config.skip) or (
            filter_fn is not None and not filter_fn(module, name)
        ):
            report.skipped.append(name)
            continue
        targets.append((name, module, role))
    for name, module, role in targets:
        ternary_type = next(t for base, t in TERNARY_TYPES.items() if isinstance(module, base))
        granularity = _granularity_for(module, config.granularity)
        replacement = ternary_type(module, granularity=granularity, beta=config.beta, clip=config.clip,
                                   learn_scales=config.learn_scales)
        _set_submodule(model, name, replacement)
        report.quantized[name] = role
    return report


def freeze(model: nn.Module) -> nn.Module:
    """Drop latent weights: every ternary layer keeps only trits + scales."""
    for module in model.modules():
        if isinstance(module, TernaryWeight):
            module.freeze()
    return model


def ternary_layers(model: nn.Module) -> dict[str, TernaryWeight]:
    return {name: m for name, m in model.named_modules() if isinstance(m, TernaryWeight)}


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
