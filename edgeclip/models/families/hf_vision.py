"""Image embedders from Hugging Face vision backbones (`edgeclip.models.image_encoder`): one image
tower. CLIP vision models preprocess as CLIPImageProcessor (short side bicubic, centre crop, CLIP
mean/std); ViT as ViTImageProcessor's defaults (whole image to a square, bilinear, mean = std = 0.5)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from edgeclip.models.families.base import IMAGE_EMBEDDER, ImageInput, ModelFamily
from edgeclip.models.image_encoder import ImageEncoder, build_image_encoder
from edgeclip.models.preprocess import CLIP_MEAN, CLIP_STD, clip_pixels, rgb_square
from edgeclip.models.towers import InputSpec, Tower

_CLIP_STEPS = {"resize": "short side, bicubic", "crop": "center", "mean": list(CLIP_MEAN), "std": list(CLIP_STD)}
_VIT_STEPS = {"resize": "whole image to a square, bilinear", "crop": "none", "mean": [0.5] * 3, "std": [0.5] * 3}


def _towers(model: ImageEncoder, batch: int = 1, seq_len: int | None = None) -> dict[str, Tower]:
    config = model.vision.config
    pixels = (InputSpec("pixel_values", (batch, config.num_channels, config.image_size, config.image_size), "float32"),)
    return {"image": Tower("image", model.eval(), pixels)}


def _preprocessing(arch: dict) -> dict:
    steps = _CLIP_STEPS if arch["model_type"] == "clip_vision_model" else _VIT_STEPS
    return {"image_size": arch["image_size"], "channels": 3, "color": "RGB", **steps, "scale": 1 / 255,
            "layout": "NCHW float32"}


def _uint8(image, preprocessing: dict) -> np.ndarray:
    size = preprocessing["image_size"]
    return clip_pixels(image, size) if preprocessing["crop"] == "center" else rgb_square(image, size)


def _normalise(pixels: np.ndarray, preprocessing: dict) -> np.ndarray:
    scaled = (pixels.astype(np.float64) * preprocessing["scale"]).astype(np.float32)
    normalised = (scaled - np.array(preprocessing["mean"], np.float32)) / np.array(preprocessing["std"], np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def _pixels(image: Image.Image, preprocessing: dict) -> np.ndarray:
    return _normalise(_uint8(image, preprocessing), preprocessing)[None]


def _batch(model: ImageEncoder, images: list[np.ndarray]) -> torch.Tensor:
    preprocessing = _preprocessing(model.vision.config.to_dict())
    return torch.from_numpy(np.concatenate([_pixels(Image.fromarray(image), preprocessing) for image in images]))


FAMILY = ModelFamily(
    name="hf-vision",
    kind=IMAGE_EMBEDDER,
    model_type=ImageEncoder,
    build=build_image_encoder,
    arch=lambda model: model.vision.config.to_dict(),
    towers=_towers,
    default_data="fashion-mnist",
    image=ImageInput(preprocessing=_preprocessing, pixels=_pixels, batch=_batch),
    bundled=True,
)
