"""One interface over the CLIP-shaped models edgeclip trains: HF CLIPModel and the demo teacher.

`DualEncoder` wraps either so training and evaluation never branch on the family: it turns raw
uint8 images and strings into model inputs (as the model's family says) and returns unit-length
embeddings. It is an nn.Module whose forward runs both towers, so DistributedDataParallel can wrap it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgeclip.errors import ModelError
from edgeclip.models.families import family_of
from edgeclip.models.families.base import CLIP


class DualEncoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        try:
            self.family = family_of(model)
        except ModelError:
            self.family = None
        if self.family is None or self.family.kind != CLIP:
            raise ModelError(f"{type(model).__name__} is not a CLIP-style model; pass an HF CLIPModel or the demo teacher")
        self.model = model
        self._tokenize = None

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def preprocess(self, images: list[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """uint8 images (HxW grayscale or HxWx3) -> the model's pixel tensor."""
        return self.family.image.batch(self.model, images)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self._tokenize is None:
            self._tokenize = self.family.text.batch_tokenizer()
        return self._tokenize(texts)

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
