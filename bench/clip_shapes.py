"""Randomly initialised HF CLIPs of the shapes the benchmarks measure (speed and size do not
depend on weight values): ViT-B/32 and ViT-B/16 (openai/clip-vit-base-patch32's and -patch16's
dimensions) and a tiny one."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

SHAPES = {
    "vit-b-32": dict(
        vision_config=dict(image_size=224, patch_size=32, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072),
        text_config=dict(hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048),
        projection_dim=512,
    ),
    "vit-b-16": dict(  # the TernaryCLIP paper's model: 197 image tokens (openai/clip-vit-base-patch16)
        vision_config=dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                           num_attention_heads=12, intermediate_size=3072),
        text_config=dict(hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048),
        projection_dim=512,
    ),
    "tiny": dict(
        vision_config=dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128),
        text_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                         max_position_embeddings=77),
        projection_dim=32,
    ),
}


def random_clip(shape: str, seed: int = 0) -> CLIPModel:
    """A seeded CLIPModel of `shape` in eval mode; the global RNG state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(CLIPConfig(**SHAPES[shape])).eval()


def random_clip_dir(path: Path, shape: str, seed: int = 0) -> Path:
    random_clip(shape, seed).save_pretrained(path)
    return path
