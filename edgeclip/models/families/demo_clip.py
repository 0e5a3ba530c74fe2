"""The built-in demo CLIP (`edgeclip.models.demo`): 28x28 grayscale images squashed to a square,
the all-MiniLM-L6-v2 WordPiece tokenizer with a 32-token context (its captions are short prompts)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from edgeclip.models.demo import DemoClip
from edgeclip.models.families.base import CLIP, ImageInput, ModelFamily
from edgeclip.models.preprocess import grayscale_square
from edgeclip.models.towers import ClipImageTower, ClipTextTower, InputSpec, Tower, text_inputs
from edgeclip.models.wordpiece import MINILM_TEXT

CONTEXT = 32


def _towers(model: DemoClip, batch: int = 1, seq_len: int | None = None) -> dict[str, Tower]:
    vision = model.config_dict()["vision"]
    size, channels = vision["image_size"], vision.get("num_channels", 3)
    pixels = (InputSpec("pixel_values", (batch, channels, size, size), "float32"),)
    return {"image": Tower("image", ClipImageTower(model).eval(), pixels),
            "text": Tower("text", ClipTextTower(model).eval(), text_inputs(batch, seq_len or CONTEXT))}


def _preprocessing(arch: dict) -> dict:
    return {"image_size": arch["vision"]["image_size"], "channels": 1, "color": "L (grayscale)",
            "resize": "whole image to a square, bilinear", "crop": "none", "scale": 1 / 255,
            "mean": [arch["pixel_mean"]], "std": [arch["pixel_std"]], "layout": "NCHW float32"}


def _pixels(image: Image.Image, preprocessing: dict) -> np.ndarray:
    """The teacher's own preprocessing (`_batch` + DemoClip.preprocess), in numpy."""
    gray = grayscale_square(image, preprocessing["image_size"]).astype(np.float32) / np.float32(255)
    normalised = (gray - np.float32(preprocessing["mean"][0])) / np.float32(preprocessing["std"][0])
    return normalised[None, None]


def _batch(model: DemoClip, images: list[np.ndarray]) -> torch.Tensor:
    size = model.image_size
    return model.preprocess(torch.stack([torch.from_numpy(grayscale_square(image, size)) for image in images]))


FAMILY = ModelFamily(
    name="demo-clip",
    kind=CLIP,
    model_type=DemoClip,
    build=lambda arch: DemoClip.from_config(arch).eval(),
    arch=lambda model: model.config_dict(),
    towers=_towers,
    default_data="fashion-mnist",
    image=ImageInput(preprocessing=_preprocessing, pixels=_pixels, batch=_batch),
    text=MINILM_TEXT,
    bundled=True,
)
