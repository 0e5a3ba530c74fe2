"""One interface over the CLIP-shaped models edgeclip trains: HF CLIPModel and the demo teacher.

`DualEncoder` wraps either so training and evaluation never branch on the family: it turns raw
uint8 images and strings into model inputs and returns unit-length embeddings. It is an
nn.Module whose forward runs both towers, so DistributedDataParallel can wrap it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import CLIPModel

from edgeclip.errors import ModelError
from edgeclip.models.demo import DemoClip
from edgeclip.models.preprocess import grayscale_square, preprocess_batch

TEXT_CONTEXT = 77  # CLIP's context length; MiniLM captions are far shorter and padded per batch


class DualEncoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, (CLIPModel, DemoClip)):
            raise ModelError(f"{type(model).__name__} is not a CLIP-style model; pass an HF CLIPModel or the demo teacher")
        self.model = model
        self._tokenizer = None

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def preprocess(self, images: list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """uint8 images (HxW grayscale or HxWx3) -> the model's pixel tensor."""
        if isinstance(self.model, DemoClip):
            size = self.model.image_size
            return self.model.preprocess(torch.stack([_gray(image, size) for image in images]))
        return preprocess_batch([np.asarray(image) for image in images], size=self.model.config.vision_config.image_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self._tokenizer is None:
            self._tokenizer = _tokenizer_for(self.model)
        if isinstance(self.model, DemoClip):
            batch = self._tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        ids = self._tokenizer(texts, context_length=TEXT_CONTEXT)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(_tensor(self.model.get_image_features(pixel_values=pixels)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(_tensor(features), dim=-1)

    def forward(self, pixels, input_ids, attention_mask):
        """(image embeddings, text embeddings, logit scale): everything a CLIP loss needs."""
        return self.encode_image(pixels), self.encode_text(input_ids, attention_mask), self.logit_scale.exp()


def _tensor(features) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output holds the projected features."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def _gray(image, size: int) -> torch.Tensor:
    return torch.from_numpy(grayscale_square(image, size))


def minilm_tokenizer(path=None):
    """The WordPiece tokenizer of all-MiniLM-L6-v2 (or of the BERT directory `path`), offline."""
    from transformers import AutoTokenizer

    from edgeclip.models.minilm import minilm_path

    directory = path if path is not None else minilm_path()
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"could not load a tokenizer from {directory}: {err}; pass a directory with tokenizer files") from err


def _tokenizer_for(model: nn.Module):
    if isinstance(model, DemoClip):
        return minilm_tokenizer()
    from edgeclip.models.tokenizer import ClipTokenizer

    return ClipTokenizer()
