"""Hugging Face `CLIPModel`: RGB images resized and cropped as CLIPImageProcessor does, CLIP's
byte-level BPE with a 77-token context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel

from edgeclip.models.families.base import CLIP, ImageInput, ModelFamily, TextInput, Tokenize
from edgeclip.models.preprocess import CLIP_MEAN, CLIP_STD, preprocess_batch, preprocess_image
from edgeclip.models.towers import ClipImageTower, ClipTextTower, InputSpec, Tower, text_inputs

CONTEXT = 77


def _towers(model: CLIPModel, batch: int = 1, seq_len: int | None = None) -> dict[str, Tower]:
    vision, text = model.config.vision_config, model.config.text_config
    size = vision.image_size
    pixels = (InputSpec("pixel_values", (batch, vision.num_channels, size, size), "float32"),)
    length = seq_len or min(CONTEXT, text.max_position_embeddings)
    return {"image": Tower("image", ClipImageTower(model).eval(), pixels),
            "text": Tower("text", ClipTextTower(model).eval(), text_inputs(batch, length))}


def _preprocessing(arch: dict) -> dict:
    return {"image_size": arch["vision_config"]["image_size"], "channels": 3, "color": "RGB",
            "resize": "short side, bicubic", "crop": "center", "scale": 1 / 255,
            "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "layout": "NCHW float32"}


def _pixels(image: Image.Image, preprocessing: dict) -> np.ndarray:
    return preprocess_image(image, size=preprocessing["image_size"]).numpy()[None]


def _batch(model: CLIPModel, images: list[np.ndarray]) -> torch.Tensor:
    return preprocess_batch([np.asarray(image) for image in images], size=model.config.vision_config.image_size)


def _vocab() -> Path:
    from edgeclip.models.tokenizer import default_vocab_path

    return default_vocab_path()


def _tokenizer(vocab: Path, fields: dict) -> Tokenize:
    """Start + BPE ids + end, zero padded; the mask covers start .. end."""
    from edgeclip.models.tokenizer import ClipTokenizer

    tokenizer = ClipTokenizer(vocab)

    def tokenize(text: str) -> tuple[np.ndarray, np.ndarray]:
        ids = tokenizer(text, context_length=fields["context_length"]).numpy()
        mask = np.zeros_like(ids)
        mask[0, : int(np.argmax(ids[0] == tokenizer.end_id)) + 1] = 1
        return ids, mask

    return tokenize


def _batch_tokenizer():
    from edgeclip.models.tokenizer import ClipTokenizer

    tokenizer = ClipTokenizer()

    def tokenize(texts: list[str]) -> dict[str, torch.Tensor]:
        ids = tokenizer(texts, context_length=CONTEXT)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    return tokenize


FAMILY = ModelFamily(
    name="hf-clip",
    kind=CLIP,
    model_type=CLIPModel,
    build=lambda arch: CLIPModel(CLIPConfig.from_dict(arch)).eval(),
    arch=lambda model: model.config.to_dict(),
    towers=_towers,
    default_data="fashion-mnist",
    image=ImageInput(preprocessing=_preprocessing, pixels=_pixels, batch=_batch),
    text=TextInput(vocab_member="tokenizer/bpe_simple_vocab_16e6.txt.gz", installed_vocab=_vocab,
                   fields={"kind": "clip-bpe"}, tokenizer=_tokenizer, batch_tokenizer=_batch_tokenizer),
    bundled=True,
)
