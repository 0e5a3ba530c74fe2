"""What a model family is: the one place that knows how to build, recognise, feed and train it.

Every verb asks a family's descriptor instead of branching on its name: checkpoints rebuild the
model from `build(arch)`, lowering and bundles take `towers(model, batch, seq_len)`, bundles copy
`image` / `text` into their manifest (the facts the device runtime needs to preprocess and
tokenize exactly as PyTorch does), and training reads `kind` and `default_data`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CLIP = "clip"  # image + text towers, trained on image-text pairs, evaluated zero-shot
SENTENCE_ENCODER = "sentence-encoder"  # one text tower, distilled on sentences, evaluated by fidelity
IMAGE_EMBEDDER = "image-embedder"  # one image tower (ViT, a CLIP's vision model); bundled, not trained yet
KINDS = (CLIP, SENTENCE_ENCODER, IMAGE_EMBEDDER)

Tokenize = Callable[[str], tuple[np.ndarray, np.ndarray]]  # text -> (ids, mask), int64 [1, context]


@dataclass(frozen=True)
class ImageInput:
    """How a picture becomes the image tower's input."""

    preprocessing: Callable[[dict], dict]  # arch -> the manifest's "preprocessing" (what the device does)
    pixels: Callable[[Image.Image, dict], np.ndarray]  # (image, that dict) -> float32 [1, C, H, W]
    batch: Callable[[nn.Module, list[np.ndarray]], torch.Tensor]  # (model, uint8 images) -> pixels, training


@dataclass(frozen=True)
class TextInput:
    """How a sentence becomes the text tower's input."""

    vocab_member: str  # where the tokenizer file sits inside a bundle
    installed_vocab: Callable[[], Path]  # that file, from this installation
    fields: dict  # the manifest's "tokenizer" fields of this family (kind, casing)
    tokenizer: Callable[[Path, dict], Tokenize]  # (vocab file, manifest "tokenizer") -> one text at a time
    batch_tokenizer: Callable[[], Callable[[list[str]], dict[str, torch.Tensor]]]  # for training
    # arch -> the "tokenizer" fields a model's own config decides (casing); raises ModelError when
    # the model's vocabulary is not the installed one a bundle would ship
    arch_fields: Callable[[dict], dict] = lambda arch: {}


@dataclass(frozen=True)
class ModelFamily:
    name: str  # what checkpoints and manifests record
    kind: str  # one of KINDS
    model_type: type  # the torch module class a loaded model of this family is
    build: Callable[[dict], nn.Module]  # arch (plain JSON) -> untrained model, eval mode
    arch: Callable[[nn.Module], dict]  # model -> its arch
    towers: Callable  # (model, batch, seq_len | None) -> {name: Tower}
    default_data: str  # the training data a bare `edgeclip train` uses
    image: ImageInput | None = None
    text: TextInput | None = None
    bundled: bool = False  # whether `edgeclip build` can make a device bundle of it yet

    def recognises(self, model: nn.Module) -> bool:
        return type(model) is self.model_type
