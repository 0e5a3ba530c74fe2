"""Towers: one encoder of a model with static input shapes (batch 1 by default: edge inference
embeds one image or one sentence at a time). Each family says which towers it has
(`edgeclip.models.families`); lowering, tuning, ONNX export and bundles all start from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name

    def example(self) -> torch.Tensor:
        if self.dtype == "int64":
            return torch.ones(self.shape, dtype=torch.long)
        return torch.zeros(self.shape, dtype=getattr(torch, self.dtype))


@dataclass
class Tower:
    """One encoder: a torch module whose forward takes `inputs` and returns one embedding tensor."""

    name: str
    module: nn.Module
    inputs: tuple[InputSpec, ...]


def _embedding(out) -> torch.Tensor:
    """HF returns either the projected tensor or a ModelOutput carrying it as `pooler_output`."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipImageTower(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, pixel_values):
        return _embedding(self.clip.get_image_features(pixel_values=pixel_values))


class ClipTextTower(nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, input_ids, attention_mask):
        return _embedding(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def text_inputs(batch: int, length: int) -> tuple[InputSpec, ...]:
    """Token ids + attention mask, padded to `length`."""
    return (InputSpec("input_ids", (batch, length), "int64"), InputSpec("attention_mask", (batch, length), "int64"))
