"""Ternarization of one tensor: int8 trits in {-1, 0, +1} times a float scale per group of rows.

Scales live along dim 0 (output channels of a Linear or Conv2d, rows of an Embedding) so a kernel
applies them after its integer reduction. A "group" is a run of `g` consecutive rows sharing one
scale: a fused QKV weight uses g = N/3 so each slice keeps its own scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeclip.errors import QuantError

Granularity = str | tuple  # "tensor" | "channel" | ("group", rows_per_group)

DEFAULT_BETA = 1.5  # measured on MiniLM: per-channel beta=1.5 beat 1.0 and 2.0, and per-tensor scales
DEFAULT_GRANULARITY = "channel"


@dataclass(frozen=True)
class TernaryTensor:
    """A ternarized weight: `values` int8 of the weight's shape, `scales` float32 of shape [groups]."""

    values: torch.Tensor
    scales: torch.Tensor
    rows_per_scale: int

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.values.to(dtype) * expand_scales(self.scales, self.rows_per_scale, self.values.dim()).to(dtype)


def rows_per_scale(granularity: Granularity, rows: int) -> int:
    """How many consecutive rows (dim 0) share one scale under `granularity`."""
    if granularity == "tensor":
        return max(rows, 1)
    if granularity == "channel":
        return 1
    if isinstance(granularity, (tuple, list)) and len(granularity) == 2 and granularity[0] == "group":
        size = int(granularity[1])
        if size <= 0 or rows % size:
            raise QuantError(
                f"group size {size} does not divide the {rows} rows of the weight; "
                "pick a group size that divides the output dimension (e.g. N/3 for fused QKV)"
            )
        return size
    raise QuantError(f"unknown granularity {granularity!r}; use 'tensor', 'channel' or ('group', rows)")


def parse_granularity(text: str) -> Granularity:
    """Parse the CLI/config spelling: 'tensor', 'channel' or 'group:G'."""
    if text in ("tensor", "channel"):
        return text
    if text.startswith("group:") and text[6:].isdigit():
        return ("group", int(text[6:]))
    raise QuantError(f"unknown granularity {text!r}; use 'tensor', 'channel' or 'group:ROWS'")


def expand_scales(scales: torch.Tensor, rows_per_group: int, ndim: int) -> torch.Tensor:
    """Broadcastable per-row scales: [groups] -> [rows, 1, ...]."""
    per_row = scales.repeat_interleave(rows_per_group) if rows_per_group > 1 else scales
    return per_row.reshape(-1, *([1] * (ndim - 1)))


def ternary_scales(weight: torch.Tensor, granularity: Granularity, beta: float) -> tuple[torch.Tensor, int]:
    """gamma = beta * mean|W| over each group of rows, floored so an all-zero group stays finite."""
    if weight.dim() < 1 or weight.shape[0] == 0:
        raise QuantError(f"cannot ternarize a tensor of shape {tuple(weight.shape)}")
    if beta <= 0:
        raise QuantError(f"beta must be positive, got {beta}")
    return ternary_scales_from_magnitudes(weight.detach().abs().float(), granularity, beta)


def ternary_scales_from_magnitudes(magnitudes: torch.Tensor, granularity: Granularity, beta: float):
    """`ternary_scales` from |W| already at hand (the training forward reuses it for its clip mask)."""
    group = rows_per_scale(granularity, magnitudes.shape[0])
    means = magnitudes.reshape(magnitudes.shape[0] // group, -1).mean(dim=1)
    return (beta * means).clamp_min(1e-8), group


def ternarize_tensor(
    weight: torch.Tensor, granularity: Granularity = DEFAULT_GRANULARITY, beta: float = DEFAULT_BETA
) -> TernaryTensor:
    """Round W / gamma to the nearest of {-1, 0, +1}."""
    scales, group = ternary_scales(weight, granularity, beta)
    values = torch.clamp(torch.round(weight.detach().float() / expand_scales(scales, group, weight.dim())), -1, 1)
    return TernaryTensor(values.to(torch.int8), scales, group)
