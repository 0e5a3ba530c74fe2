"""Ternary drop-ins for nn.Linear, nn.Conv2d and nn.Embedding.

While training each keeps a latent float weight and quantizes it on every forward with a
straight-through estimator. `freeze()` drops the latent weight and keeps only int8 trits and
float scales, which is what a checkpoint stores and a kernel consumes. Both modes compute the
forward with the same arithmetic, so a frozen layer reproduces its training-mode output bit for bit.

With `learn_scales` the output scales become parameters of their own (initialised to beta * mean|W|,
so step 0 is unchanged): the threshold still follows the latent weights, but the loss, not mean|W|,
decides how large each row's trits are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeclip.errors import QuantError
from edgeclip.quant.ternarize import (
    DEFAULT_BETA,
    DEFAULT_GRANULARITY,
    Granularity,
    TernaryTensor,
    expand_scales,
    rows_per_scale,
    ternarize_tensor,
    ternary_scales,
    ternary_scales_from_magnitudes,
)

DEFAULT_CLIP = 2.0  # latent weights beyond clip * gamma get no gradient: rounding cannot move them


def _trits_and_clip_mask(weight: torch.Tensor, granularity: Granularity, beta: float, clip: float):
    """(float trits, per-row gamma = beta * mean|W|, mask |W| <= clip * gamma, rows per scale) of a
    latent weight: what both straight-through forwards start from."""
    magnitudes = weight.detach().float().abs()
    scales, group = ternary_scales_from_magnitudes(magnitudes, granularity, beta)
    gamma = expand_scales(scales, group, weight.dim())
    trits = (weight.detach().float() / gamma).round_().clamp_(-1, 1)
    return trits, gamma, magnitudes <= clip * gamma, group


class _SteTernarize(torch.autograd.Function):
    """Forward: the exact ternary weight. Backward: identity inside the clip range, zero outside.

    Computed in place on one scratch tensor (no int8 round trip): the same values as
    `ternarize_tensor(...).dequantize()`, in fewer passes over the weight, which matters because
    this runs on every weight at every training step."""

    @staticmethod
    def forward(ctx, weight, granularity, beta, clip):
        trits, gamma, inside, _ = _trits_and_clip_mask(weight, granularity, beta, clip)
        ctx.save_for_backward(inside)
        return trits.mul_(gamma).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None, None, None


class _SteTernarizeScaled(torch.autograd.Function):
    """Trits chosen as in `_SteTernarize`, times a learned per-group scale.

    Backward: the latent weight gets the straight-through gradient (identity inside the clip range);
    each scale gets the sum over its rows of grad * trit, the exact derivative of trits * scale."""

    @staticmethod
    def forward(ctx, weight, scales, granularity, beta, clip):
        trits, _, inside, group = _trits_and_clip_mask(weight, granularity, beta, clip)
        ctx.save_for_backward(inside, trits)
        ctx.group = group
        return (trits * expand_scales(scales.detach().float(), group, weight.dim())).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        inside, trits = ctx.saved_tensors
        per_row = (grad_output.float() * trits).reshape(trits.shape[0], -1).sum(dim=1)
        grad_scales = per_row.reshape(-1, ctx.group).sum(dim=1)
        return grad_output * inside, grad_scales, None, None, None


class TernaryWeight(nn.Module):
    """Weight handling shared by the ternary layers; subclasses only say how the weight is applied."""

    def __init__(self, weight: torch.Tensor, granularity: Granularity, beta: float, clip: float,
                 learn_scales: bool = False):
        super().__init__()
        self.granularity = granularity
        self.beta = beta
        self.clip = clip
        self.group = rows_per_scale(granularity, weight.shape[0])
        self.weight = nn.Parameter(weight.detach().clone())
        initial = nn.Parameter(ternary_scales(weight, granularity, beta)[0]) if learn_scales else None
        self.register_parameter("learned_scales", initial)

    @property
    def frozen(self) -> bool:
        return "weight" not in self._parameters

    @property
    def weight(self) -> torch.Tensor:
        """The latent parameter while training; once frozen, the dequantized weight (read-only view
        for code such as HF's that inspects `.weight.dtype`)."""
        if self.frozen:
            return self.ternary().dequantize()
        return self._parameters["weight"]

    @property
    def weight_shape(self) -> torch.Size:
        return self.trits.shape if self.frozen else self.weight.shape

    def ternary(self) -> TernaryTensor:
        if self.frozen:
            return TernaryTensor(self.trits, self.scales, self.group)
        ternary = ternarize_tensor(self.weight, self.granularity, self.beta)
        if self.learned_scales is None:
            return ternary
        return TernaryTensor(ternary.values, self.learned_scales.detach().float().clone(), self.group)

    def effective_weight(self) -> torch.Tensor:
        if self.frozen:
            return self.ternary().dequantize()
        return self._ste(self.weight, self.learned_scales)

    def _ste(self, weight: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
        if scales is None:
            return _SteTernarize.apply(weight, self.granularity, self.beta, self.clip)
        return _SteTernarizeScaled.apply(weight, scales, self.granularity, self.beta, self.clip)

    def freeze(self) -> None:
        """Keep only int8 trits + scales (inference form)."""
        if self.frozen:
            return
        ternary = self.ternary()
        del self._parameters["weight"]
        self._parameters["learned_scales"] = None
        self.register_buffer("trits", ternary.values)
        self.register_buffer("scales", ternary.scales.float())

    def load_ternary(self, values: torch.Tensor, scales: torch.Tensor) -> None:
        """Freeze with given trits and scales (used when reading a checkpoint)."""
        self.freeze()
        if values.shape != self.trits.shape or scales.shape != self.scales.shape:
            raise QuantError(
                f"ternary shapes {tuple(values.shape)}/{tuple(scales.shape)} do not match "
                f"{tuple(self.trits.shape)}/{tuple(self.scales.shape)}"
            )
        self.trits.copy_(values)
        self.scales.copy_(scales)

    def extra_repr(self) -> str:
        mode = "frozen" if self.frozen else "latent"
        return f"shape={tuple(self.weight_shape)}, granularity={self.granularity!r}, beta={self.beta}, {mode}"


class TernaryLinear(TernaryWeight):
    def __init__(self, source: nn.Linear, granularity=DEFAULT_GRANULARITY, beta=DEFAULT_BETA, clip=DEFAULT_CLIP,
                 learn_scales=False):
        super().__init__(source.weight, granularity, beta, clip, learn_scales)
        self.in_features, self.out_features = source.in_features, source.out_features
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight().to(x.dtype), self.bias)


class TernaryConv2d(TernaryWeight):
    """Ternary patch embedding (ViT's conv with stride = kernel)."""

    def __init__(self, source: nn.Conv2d, granularity=DEFAULT_GRANULARITY, beta=DEFAULT_BETA, clip=DEFAULT_CLIP,
                 learn_scales=False):
        super().__init__(source.weight, granularity, beta, clip, learn_scales)
        self.stride, self.padding = source.stride, source.padding
        self.dilation, self.groups = source.dilation, source.groups
        self.bias = None if source.bias is None else nn.Parameter(source.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight().to(x.dtype)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class TernaryEmbedding(TernaryWeight):
    """Ternary token embedding: one scale per token row under 'channel' granularity."""

    def __init__(self, source: nn.Embedding, granularity=DEFAULT_GRANULARITY, beta=DEFAULT_BETA, clip=DEFAULT_CLIP,
                 learn_scales=False):
        super().__init__(source.weight, granularity, beta, clip, learn_scales)
        self.padding_idx = source.padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.frozen and self.group == 1:
            return self._used_rows_forward(ids)
        if not self.frozen:
            return F.embedding(ids, self.effective_weight(), self.padding_idx)
        # Gather int8 rows first: dequantizing the whole vocabulary per call would dominate.
        row_scales = expand_scales(self.scales, self.group, 1)[ids].unsqueeze(-1)
        return self.trits[ids].float() * row_scales

    def _used_rows_forward(self, ids: torch.Tensor) -> torch.Tensor:
        """With a scale per row, ternarizing only the rows a batch uses gives the same output and
        gradients as ternarizing the whole vocabulary, at a few hundred rows instead of ~30,000."""
        used, positions = torch.unique(ids, return_inverse=True)
        rows = self._ste(self.weight[used], None if self.learned_scales is None else self.learned_scales[used])
        padding = (used == self.padding_idx).nonzero().flatten().tolist() if self.padding_idx is not None else []
        return F.embedding(positions, rows, padding[0] if padding else None)


TERNARY_TYPES = {nn.Linear: TernaryLinear, nn.Conv2d: TernaryConv2d, nn.Embedding: TernaryEmbedding}
