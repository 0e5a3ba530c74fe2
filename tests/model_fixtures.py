"""A tiny, randomly initialised CLIP so tests exercise real HF code and real files in seconds."""

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

_VISION = dict(
    image_size=32,
    patch_size=8,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
)
_TEXT = dict(
    vocab_size=49408,  # the CLIP BPE vocabulary, so the real tokenizer's ids are valid inputs
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=77,
)


def tiny_clip_config(**overrides) -> CLIPConfig:
    """Tiny CLIPConfig; `vision_<field>` / `text_<field>` override a tower, other names the top level.

    Example: `tiny_clip_config(vision_hidden_act="gelu", text_hidden_act="gelu", projection_dim=16)`.
    """
    vision, text, top = dict(_VISION), dict(_TEXT), {"projection_dim": 32}
    for name, value in overrides.items():
        if name.startswith("vision_"):
            vision[name.removeprefix("vision_")] = value
        elif name.startswith("text_"):
            text[name.removeprefix("text_")] = value
        else:
            top[name] = value
    return CLIPConfig(vision_config=vision, text_config=text, **top)


def make_tiny_clip(seed: int = 0, **overrides) -> CLIPModel:
    """Seeded tiny CLIPModel in eval mode; the global RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(tiny_clip_config(**overrides))
    return model.eval()


def make_tiny_clip_dir(path, seed: int = 0, **overrides) -> Path:
    """Write a seeded tiny CLIPModel with save_pretrained (safetensors) and return the directory."""
    directory = Path(path)
    make_tiny_clip(seed, **overrides).save_pretrained(directory)
    return directory


def make_ternary_tiny_clip(seed: int = 3) -> CLIPModel:
    """The tiny CLIP quantized Q-ALL and frozen (int8 trits + scales): what lowering compiles."""
    from edgeclip.quant import TernaryConfig, freeze, quantize

    model = make_tiny_clip(seed)
    quantize(model, TernaryConfig(policy="q-all"))
    freeze(model)
    return model.eval()


def cosine(a, b) -> float:
    """Cosine similarity of two arrays, flattened, in float64 (compiled output vs torch)."""
    import numpy as np

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
