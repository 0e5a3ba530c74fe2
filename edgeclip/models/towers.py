"""The towers of each model family: which encoders it has and the static inputs each one takes.

A tower is one encoder with static input shapes (batch 1 by default: edge inference embeds one
image or one sentence at a time). Lowering, tuning, ONNX export and bundles all start from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgeclip.errors import ModelError
from edgeclip.models.families import open_model

CLIP_CONTEXT = 77
MINILM_SEQ_LEN = 128
DEMO_SEQ_LEN = 32  # the demo teacher's captions are short class prompts


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


def _text_inputs(batch: int, length: int) -> tuple[InputSpec, ...]:
    return (InputSpec("input_ids", (batch, length), "int64"), InputSpec("attention_mask", (batch, length), "int64"))


def model_towers(model: nn.Module, family: str, batch: int = 1, seq_len: int | None = None) -> dict[str, Tower]:
    """The towers of a model of `family` ('hf-clip', 'demo-clip': image + text; 'minilm': text).

    Image towers take preprocessed pixels; text towers take token ids + attention mask padded
    to `seq_len` (default: CLIP's 77 context, 128 for MiniLM, 32 for the demo teacher).
    """
    if family in ("hf-clip", "demo-clip"):
        if family == "hf-clip":
            vision, text = model.config.vision_config, model.config.text_config
            size, channels = vision.image_size, vision.num_channels
            length = seq_len or min(CLIP_CONTEXT, text.max_position_embeddings)
        else:
            vision = model.config_dict()["vision"]
            size, channels = vision["image_size"], vision.get("num_channels", 3)
            length = seq_len or DEMO_SEQ_LEN
        pixels = (InputSpec("pixel_values", (batch, channels, size, size), "float32"),)
        return {
            "image": Tower("image", ClipImageTower(model).eval(), pixels),
            "text": Tower("text", ClipTextTower(model).eval(), _text_inputs(batch, length)),
        }
    if family == "minilm":
        return {"text": Tower("text", model.eval(), _text_inputs(batch, seq_len or MINILM_SEQ_LEN))}
    raise ModelError(f"lowering knows the towers of 'hf-clip', 'demo-clip' and 'minilm' models, not {family!r}")


def select_towers(model_or_ckpt, towers=None, seq_len: int | None = None) -> tuple[str, dict[str, Tower]]:
    """(family, {name: Tower}) of the requested towers (default: all the model has), in request order."""
    model, family = open_model(model_or_ckpt)
    available = model_towers(model, family, seq_len=seq_len)
    wanted = list(towers or available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ModelError(f"{family} models have towers {sorted(available)}; {missing} do not exist")
    return family, {name: available[name] for name in wanted}
