"""The built-in teacher: a small ViT for 28x28 grayscale images + the all-MiniLM-L6-v2 text tower.

No pretrained CLIP can be downloaded, so edgeclip trains this one itself (`edgeclip train-teacher`).
Module names follow HF CLIPModel (`vision_model.encoder.layers.N.self_attn.q_proj`,
`visual_projection`, ...) and BERT (`text_model.bert...`) so quantization policies see the same
roles as in a real CLIP, and lowering meets only standard ops.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

from edgeclip.errors import ModelError
from edgeclip.fsutil import cache_root
from edgeclip.models.minilm import SentenceEncoder

# Patch 4 on 28x28 gives 7x7 = 49 patches + CLS = 50 tokens, the sequence length of ViT-B/32.
DEMO_VISION = dict(
    image_size=28,
    patch_size=4,
    num_channels=1,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    hidden_act="gelu",
)
DEMO_PROJECTION_DIM = 64
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # train split pixel statistics (/255)
TEACHER_NAME = "demo-fashion-mnist"


class DemoClip(nn.Module):
    """CLIP-shaped dual encoder; `get_image_features` / `get_text_features` mirror HF CLIPModel."""

    def __init__(self, vision: dict, text: dict, projection_dim: int, pixel_mean: float, pixel_std: float):
        super().__init__()
        self.vision_model = CLIPVisionModel(CLIPVisionConfig(**vision))
        # BERT's pooler is never used by sentence embeddings; leaving it out keeps every weight trained.
        self.text_model = SentenceEncoder(BertModel(BertConfig(**text), add_pooling_layer=False))
        self.visual_projection = nn.Linear(vision["hidden_size"], projection_dim, bias=False)
        self.text_projection = nn.Linear(text["hidden_size"], projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._arch = {
            "vision": dict(vision),
            "text": dict(text),
            "projection_dim": projection_dim,
            "pixel_mean": pixel_mean,
            "pixel_std": pixel_std,
        }

    def config_dict(self) -> dict:
        """Plain-JSON architecture (no weights): enough for `from_config` to rebuild the model."""
        return {key: dict(value) if isinstance(value, dict) else value for key, value in self._arch.items()}

    @classmethod
    def from_config(cls, arch: dict) -> DemoClip:
        try:
            return cls(arch["vision"], arch["text"], arch["projection_dim"], arch["pixel_mean"], arch["pixel_std"])
        except (KeyError, TypeError) as err:
            raise ModelError(f"demo-clip architecture is incomplete ({err}); re-create it with edgeclip train-teacher") from err

    @property
    def image_size(self) -> int:
        return self._arch["vision"]["image_size"]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W] grayscale -> normalised float [B, 1, H, W]."""
        pixels = images.float().div(255).unsqueeze(1)
        return (pixels - self._arch["pixel_mean"]) / self._arch["pixel_std"]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text_projection(self.text_model(input_ids, attention_mask))


def new_demo_clip(seed: int = 0) -> DemoClip:
    """A fresh teacher: random ViT + projections, text tower loaded from the real all-MiniLM-L6-v2."""
    from edgeclip.models.minilm import load_minilm

    bert, _ = load_minilm()
    text = {k: v for k, v in bert.config.to_dict().items() if k in _BERT_FIELDS}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DemoClip(DEMO_VISION, text, DEMO_PROJECTION_DIM, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    missing, unexpected = model.text_model.bert.load_state_dict(bert.state_dict(), strict=False)
    if missing or [k for k in unexpected if not k.startswith("pooler.")]:
        raise ModelError(f"MiniLM weights do not fit the demo text tower (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


_BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
)


def demo_teacher_dir(must_exist: bool = True) -> Path:
    """The cached built-in teacher checkpoint (written by `edgeclip train-teacher`)."""
    directory = cache_root() / "teachers" / TEACHER_NAME
    if must_exist and not (directory / "config.json").is_file():
        raise ModelError(f"the built-in teacher is not trained yet ({directory}); run `edgeclip train-teacher` first")
    return directory
