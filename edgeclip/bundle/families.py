"""What a bundle must carry so a device app can feed a model family's towers: the tokenizer file
it ships, the manifest's `tokenizer` and `preprocessing` fields, and the same two steps in Python
(image -> pixels, text -> token ids) for the fixed reference input and for `edgeclip run`.

One small entry per family that can be bundled:
- hf-clip: CLIP byte-level BPE, RGB, short side to the model's size (bicubic), centre crop, CLIP mean/std;
- demo-clip: all-MiniLM-L6-v2 WordPiece, grayscale squashed to 28x28, Fashion-MNIST mean/std.
The tokenizer used at run time is the file inside the bundle, so a bundle classifies the same on
any machine whatever edgeclip or transformers is installed there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgeclip.errors import BundleError

TEXT_INPUTS = ["input_ids", "attention_mask"]
Tokenize = Callable[[str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BundleFamily:
    name: str
    vocab_member: str  # where the tokenizer file sits inside the bundle
    installed_vocab: Callable[[], Path]  # the file shipped there, from this installation
    tokenizer_fields: Callable[[dict], dict]  # arch -> manifest "tokenizer" (less vocab/context/inputs)
    preprocessing: Callable[[dict], dict]  # arch -> manifest "preprocessing"
    pixels: Callable[[Image.Image, dict], np.ndarray]  # (image, preprocessing) -> float32 [1, C, H, W]
    tokenizer: Callable[[Path, dict], Tokenize]  # (vocab file, manifest "tokenizer") -> text -> (ids, mask)

    def model_info(self, config: dict, context_length: int | None) -> dict:
        """Manifest fields a device app needs: model, tokenizer (when there is a text tower), preprocessing."""
        quant = config.get("quant") or {}
        info = {
            "model": {"family": self.name, "arch": config["arch"],
                      "quant": {k: v for k, v in quant.items() if k != "layers"} or None},
            "preprocessing": self.preprocessing(config["arch"]),
        }
        if context_length is not None:
            info["tokenizer"] = {**self.tokenizer_fields(config["arch"]), "vocab": self.vocab_member,
                                 "context_length": context_length, "inputs": TEXT_INPUTS, "dtype": "int64",
                                 "padding": 0}
        return info

    def tokenizer_files(self) -> dict[str, bytes]:
        return {self.vocab_member: self.installed_vocab().read_bytes()}


def family_for(name: str) -> BundleFamily:
    if name not in FAMILIES:
        raise BundleError(f"bundles are built for model families {', '.join(FAMILIES)}, not {name!r}; "
                          "train or ternarize a CLIP-style model (an HF CLIPModel directory or 'demo')")
    return FAMILIES[name]


def family_of(manifest: dict) -> BundleFamily:
    """The family a bundle's manifest names (`model.family`)."""
    name = (manifest.get("model") or {}).get("family")
    if name is None:
        raise BundleError("this bundle's manifest names no model family; rebuild it with `edgeclip build`")
    return family_for(name)


def read_image(path) -> Image.Image:
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, UnidentifiedImageError) as err:
        raise BundleError(f"cannot read the image {path} ({err}); pass a PNG or JPEG file") from err


# ---- hf-clip -------------------------------------------------------------------------------------


def _clip_vocab() -> Path:
    from edgeclip.models.tokenizer import default_vocab_path

    return default_vocab_path()


def _clip_preprocessing(arch: dict) -> dict:
    from edgeclip.models.preprocess import CLIP_MEAN, CLIP_STD

    return {"image_size": arch["vision_config"]["image_size"], "channels": 3, "color": "RGB",
            "resize": "short side, bicubic", "crop": "center", "scale": 1 / 255,
            "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "layout": "NCHW float32"}


def _clip_pixels(image: Image.Image, preprocessing: dict) -> np.ndarray:
    from edgeclip.models.preprocess import preprocess_image

    return preprocess_image(image, size=preprocessing["image_size"]).numpy()[None]


def _clip_tokenizer(vocab: Path, fields: dict) -> Tokenize:
    """Start + BPE ids + end, zero padded; the mask covers start .. end."""
    from edgeclip.models.tokenizer import ClipTokenizer

    tokenizer = ClipTokenizer(vocab)

    def tokenize(text: str) -> tuple[np.ndarray, np.ndarray]:
        ids = tokenizer(text, context_length=fields["context_length"]).numpy()
        mask = np.zeros_like(ids)
        mask[0, : int(np.argmax(ids[0] == tokenizer.end_id)) + 1] = 1
        return ids, mask

    return tokenize


HF_CLIP = BundleFamily(
    name="hf-clip",
    vocab_member="tokenizer/bpe_simple_vocab_16e6.txt.gz",
    installed_vocab=_clip_vocab,
    tokenizer_fields=lambda arch: {"kind": "clip-bpe"},
    preprocessing=_clip_preprocessing,
    pixels=_clip_pixels,
    tokenizer=_clip_tokenizer,
)


# ---- demo-clip -----------------------------------------------------------------------------------


def _minilm_vocab() -> Path:
    from edgeclip.models.minilm import minilm_path

    return minilm_path() / "vocab.txt"


def _demo_preprocessing(arch: dict) -> dict:
    return {"image_size": arch["vision"]["image_size"], "channels": 1, "color": "L (grayscale)",
            "resize": "whole image to a square, bilinear", "crop": "none", "scale": 1 / 255,
            "mean": [arch["pixel_mean"]], "std": [arch["pixel_std"]], "layout": "NCHW float32"}


def _demo_pixels(image: Image.Image, preprocessing: dict) -> np.ndarray:
    """The teacher's own preprocessing (DualEncoder + DemoClip.preprocess), in numpy."""
    from edgeclip.models.preprocess import grayscale_square

    gray = grayscale_square(image, preprocessing["image_size"]).astype(np.float32) / np.float32(255)
    normalised = (gray - np.float32(preprocessing["mean"][0])) / np.float32(preprocessing["std"][0])
    return normalised[None, None]


def _wordpiece_tokenizer(vocab: Path, fields: dict) -> Tokenize:
    """[CLS] + WordPiece ids + [SEP], truncated and zero padded to the context; mask = real tokens."""
    from transformers import BertTokenizer

    try:
        tokens = vocab.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BundleError(f"cannot read the WordPiece vocabulary {vocab} ({err}); rebuild the bundle") from err
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=fields["lowercase"])

    def tokenize(text: str) -> tuple[np.ndarray, np.ndarray]:
        batch = tokenizer([text], padding="max_length", truncation=True, max_length=fields["context_length"],
                          return_tensors="np")
        return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)

    return tokenize


DEMO_CLIP = BundleFamily(
    name="demo-clip",
    vocab_member="tokenizer/vocab.txt",
    installed_vocab=_minilm_vocab,
    tokenizer_fields=lambda arch: {"kind": "wordpiece", "lowercase": True},
    preprocessing=_demo_preprocessing,
    pixels=_demo_pixels,
    tokenizer=_wordpiece_tokenizer,
)

FAMILIES = {family.name: family for family in (HF_CLIP, DEMO_CLIP)}
