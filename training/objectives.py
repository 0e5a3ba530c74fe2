"""What each kind of training optimises: one class per objective, all driven by `loop.train`.

- `ClipDistillation`: a ternary CLIP student against its float teacher (task, CRD, ICL, FD).
- `SelfTaught`: a ternary sentence encoder against its own float weights (MSE on pooled outputs).
- `TeacherTraining`: the built-in teacher's image tower against frozen, cached caption embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgeclip.models.dual import DualEncoder
from edgeclip.training.data import LabeledImages, PairBatch
from edgeclip.training.losses import LossWeights, clip_distillation

MAX_LOG_SCALE = 4.6052  # CLIP caps the logit scale at 100


def _to(device, *tensors):
    return [t.to(device) for t in tensors]


class ClipDistillation:
    """Teacher outputs for prompt captions are cached by text (few captions, many images); unique
    captions (CSV, shards) are encoded with their batch. Images run through the teacher every step."""

    def __init__(self, student: DualEncoder, teacher: DualEncoder | None, source, weights: LossWeights):
        self.module, self.teacher, self.source, self.weights = student, teacher, source, weights
        self.cache_text = isinstance(source, LabeledImages)
        self._teacher_text: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict:
        return {"teacher_text": dict(self._teacher_text)}

    def load_state_dict(self, state: dict) -> None:
        self._teacher_text = dict(state["teacher_text"])

    @property
    def skipped(self) -> int:
        return self.source.skipped

    def batch(self, step, batch_size, seed, rank, world) -> PairBatch:
        return self.source.batch_at(step, batch_size, seed).shard(rank, world)

    def loss(self, module, batch: PairBatch, device):
        tokens = self.module.tokenize(batch.texts)
        pixels = self.module.preprocess(batch.images)
        pixels, ids, mask, index = _to(device, pixels, tokens["input_ids"], tokens["attention_mask"], batch.text_index)
        student = module(pixels, ids, mask)
        teacher = None if self.teacher is None else self._teacher_outputs(batch, device)
        return clip_distillation(student, teacher, index, self.weights)

    @torch.no_grad()
    def _teacher_outputs(self, batch: PairBatch, device):
        teacher = self.teacher.to(device).eval()
        image = teacher.encode_image(teacher.preprocess(batch.images).to(device))
        cache = self._teacher_text if self.cache_text else {}
        missing = [t for t in batch.texts if t not in cache]
        if missing:
            tokens = teacher.tokenize(missing)
            encoded = teacher.encode_text(tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
            cache.update(zip(missing, encoded, strict=True))
        text = torch.stack([cache[t] for t in batch.texts]).to(device)
        return image, text, teacher.logit_scale.exp()


class SelfTaught:
    """Self-taught distillation (arXiv 2411.15438): the float model is the teacher of its ternary copy.

    Teacher embeddings are computed once per sentence and kept, so later epochs cost only the student.
    The loss is the squared distance between unit embeddings summed over dimensions, 2 - 2cos.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, tokenizer, corpus, max_length: int = 48):
        self.module, self.teacher, self.tokenizer, self.corpus = student, teacher.eval(), tokenizer, corpus
        self.max_length = max_length
        self.skipped = 0
        self._cache: dict[int, torch.Tensor] = {}

    def state_dict(self) -> dict:
        return {"teacher": dict(self._cache)}

    def load_state_dict(self, state: dict) -> None:
        self._cache = dict(state["teacher"])

    def batch(self, step, batch_size, seed, rank, world) -> list[int]:
        return self.corpus.batch_at(step, batch_size, seed)[rank::world]

    def loss(self, module, indices: list[int], device):
        texts = [self.corpus.train[i] for i in indices]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        ids, mask = _to(device, tokens["input_ids"], tokens["attention_mask"])
        target = self._targets(indices, ids, mask)
        student = module(ids, mask)
        loss = (student - target).pow(2).sum(-1).mean()
        return loss, {"distill": loss.detach(), "cosine": F.cosine_similarity(student, target).mean().detach()}

    @torch.no_grad()
    def _targets(self, indices, ids, mask) -> torch.Tensor:
        todo = [n for n, i in enumerate(indices) if i not in self._cache]
        if todo:
            teacher = self.teacher.to(ids.device)
            fresh = teacher(ids[todo], mask[todo])
            self._cache.update((indices[n], e) for n, e in zip(todo, fresh, strict=True))
        return torch.stack([self._cache[i] for i in indices]).to(ids.device)


class CachedCaptionClip(nn.Module):
    """The demo teacher with its text tower replaced, for training, by fixed sentence embeddings.

    MiniLM is frozen, so each caption's 384-d sentence embedding never changes: computing the
    prompts once leaves only the image tower and the two projections to train.
    """

    def __init__(self, model, captions: list[str], sentence_embeddings: torch.Tensor):
        super().__init__()
        self.model = model
        self.rows = {text: i for i, text in enumerate(captions)}
        self.register_buffer("sentences", sentence_embeddings)
        for param in model.text_model.parameters():
            param.requires_grad_(False)

    def forward(self, pixels, caption_rows):
        image = F.normalize(self.model.get_image_features(pixels), dim=-1)
        text = F.normalize(self.model.text_projection(self.sentences[caption_rows]), dim=-1)
        return image, text, self.model.logit_scale.clamp(max=MAX_LOG_SCALE).exp()


class TeacherTraining:
    """Contrastive training of the demo image tower on Fashion-MNIST, with light augmentation."""

    def __init__(self, module: CachedCaptionClip, source):
        self.module, self.source = module, source
        self.skipped = 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state  # the caption embeddings are recomputed identically at start-up

    def batch(self, step, batch_size, seed, rank, world) -> PairBatch:
        return self.source.batch_at(step, batch_size, seed).shard(rank, world)

    def loss(self, module, batch: PairBatch, device):
        images = augment(torch.from_numpy(np.stack(batch.images)))
        pixels = self.module.model.preprocess(images)
        rows = torch.tensor([self.module.rows[t] for t in batch.texts])
        pixels, rows, index = _to(device, pixels, rows, batch.text_index)
        return clip_distillation(module(pixels, rows), None, index, LossWeights.only("task"))


def augment(images: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Random shift by up to `pad` pixels and random horizontal flip (uses the step-seeded global RNG)."""
    count, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, count))
    flip = torch.rand(count) < 0.5
    out = torch.empty_like(images)
    for n in range(count):
        crop = padded[n, dy[n] : dy[n] + height, dx[n] : dx[n] + width]
        out[n] = crop.flip(-1) if flip[n] else crop
    return out
