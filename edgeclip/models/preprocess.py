"""CLIP image preprocessing with Pillow + numpy (no torchvision), matching HF CLIPImageProcessor.

Same steps and rounding as HF's PIL backend: short side to `size` (long side truncated, as
torchvision does), PIL bicubic on uint8, centre crop with floor offsets, /255 in float64, then
normalise in float32. A photo is first turned upright as its EXIF Orientation says (phones store
them sideways and tag them), as the bundle runner's `preprocess` does on the device.
"""

import numpy as np
import torch
from PIL import Image, ImageOps

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def upright(image):
    """A PIL image turned as its EXIF Orientation tag says; arrays (no EXIF) as they are."""
    return ImageOps.exif_transpose(image) if isinstance(image, Image.Image) else image


def _as_rgb(image) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return upright(image).convert("RGB")


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    return image.resize(new_size, resample=Image.Resampling.BICUBIC)


def center_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """Crop an HWC array whose sides are both >= size to size x size around its centre."""
    height, width = pixels.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return pixels[top : top + size, left : left + size]


def clip_pixels(image, size: int) -> np.ndarray:
    """A PIL image or uint8 array -> uint8 [size, size, 3]: resized and cropped, not yet scaled."""
    return center_crop(np.asarray(resize_short_side(_as_rgb(image), size)), size)


def rgb_square(image, size: int) -> np.ndarray:
    """A PIL image or uint8 array -> uint8 [size, size, 3]: the whole image to a square, PIL
    bilinear, as ViTImageProcessor resizes (and the runner's "whole image to a square, bilinear")."""
    return np.asarray(_as_rgb(image).resize((size, size), Image.Resampling.BILINEAR))


def preprocess_image(image, size: int = 224) -> torch.Tensor:
    """A PIL image or uint8 array (HxW, HxWx3, HxWx4) -> float32 tensor [3, size, size]."""
    pixels = clip_pixels(image, size)
    scaled = (pixels.astype(np.float64) * (1 / 255)).astype(np.float32)
    normalised = (scaled - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def preprocess_batch(images, size: int = 224) -> torch.Tensor:
    """Several images -> float32 tensor [B, 3, size, size]."""
    return torch.stack([preprocess_image(image, size) for image in images])


def grayscale_square(image, size: int) -> np.ndarray:
    """A PIL image or uint8 array -> uint8 [size, size] luminance, the whole frame squashed to a
    square (PIL bilinear, no crop): how the built-in teacher sees any picture, as Fashion-MNIST frames."""
    if isinstance(image, Image.Image):
        image = upright(image).convert("L")
    array = np.asarray(image)
    if array.ndim == 2 and array.shape == (size, size):
        return np.array(array, dtype=np.uint8)
    resized = Image.fromarray(array).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).copy()
