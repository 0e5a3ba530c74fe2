"""Image embedders: a Hugging Face vision backbone (`ViTModel`, `CLIPVisionModel`) as one image
tower whose output is the model's pooled embedding, unit length, with the pooling and the L2
normalisation inside the graph (as `SentenceEncoder` does for text), so a bundle's runner only
feeds pixels. ViT pools the final-LayerNorm [CLS] state (its tanh pooler is a classification head,
left out); CLIP's vision model its own post-LayerNorm [CLS] (`pooler_output`)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

from edgeclip.errors import ModelError
from edgeclip.models.local_dir import checked_model_dir, load_pretrained_strict

BACKBONES = {"vit": (ViTModel, ViTConfig), "clip_vision_model": (CLIPVisionModel, CLIPVisionConfig)}


class ImageEncoder(nn.Module):
    def __init__(self, vision: nn.Module):
        super().__init__()
        self.vision = vision

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.vision(pixel_values=pixel_values)
        pooled = out.last_hidden_state[:, 0] if isinstance(self.vision, ViTModel) else out.pooler_output
        return nn.functional.normalize(pooled, p=2, dim=-1)


def _backbone(model_type) -> tuple[type, type]:
    if model_type not in BACKBONES:
        raise ModelError(f"image embedders are {', '.join(BACKBONES)} models, not {model_type!r}")
    return BACKBONES[model_type]


def build_image_encoder(arch: dict) -> ImageEncoder:
    """An untrained encoder from its arch (the backbone's HF config, `model_type` naming it)."""
    model_class, config_class = _backbone(arch.get("model_type"))
    return ImageEncoder(model_class(config_class.from_dict(arch))).eval()


def load_image_encoder(path) -> ImageEncoder:
    """A local ViTModel / CLIPVisionModel directory, in float32 eval mode."""
    directory, config = checked_model_dir(path, "image embedder")
    model_class, _ = _backbone(config.get("model_type"))
    return ImageEncoder(load_pretrained_strict(model_class, directory, "image embedder")).eval()
