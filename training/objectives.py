"""What each kind of training optimises: one class per objective, all driven by `loop.train`.

- `ClipDistillation`: a ternary CLIP student against its float teacher (task, CRD, ICL, FD).
- `SelfTaught`: a ternary sentence encoder against its own float weights (pooled and token states).
- `TeacherTraining`: the built-in teacher's image tower against frozen, cached caption embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgeclip.errors import TrainingError
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

    The loss is the squared distance between unit sentence embeddings summed over dimensions,
    2 - 2cos, plus (with `token_weight` > 0) a token-level term: the relative squared error of every
    transformer layer's token states, which gives more signal per sentence than one pooled vector.
    Sentences are grouped by token length (`LENGTH_WINDOW` batches at a time) so a batch pads to
    about its own length, not to the longest sentence in the corpus.
    With the token term off, teacher embeddings are computed once per sentence and kept.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, tokenizer, corpus, max_length: int = 48,
                 token_weight: float = 0.0):
        self.module, self.teacher, self.tokenizer, self.corpus = student, teacher.eval(), tokenizer, corpus
        self.max_length, self.token_weight = max_length, token_weight
        self.skipped = 0
        self._cache: dict[int, torch.Tensor] = {}
        self._held_out_teacher: torch.Tensor | None = None
        self._lengths = np.array([len(ids) for ids in tokenizer(corpus.train, truncation=True,
                                                                max_length=max_length)["input_ids"]])
        self._student_taps = LayerTaps(student) if token_weight > 0 else None
        self._teacher_taps = LayerTaps(teacher) if token_weight > 0 else None

    def state_dict(self) -> dict:
        return {"teacher": dict(self._cache)}

    def load_state_dict(self, state: dict) -> None:
        self._cache = dict(state["teacher"])

    def batch(self, step, batch_size, seed, rank, world) -> list[int]:
        return length_grouped(self.corpus, self._lengths, step, batch_size, seed)[rank::world]

    def loss(self, module, indices: list[int], device):
        texts = [self.corpus.train[i] for i in indices]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        ids, mask = _to(device, tokens["input_ids"], tokens["attention_mask"])
        target = self._targets(indices, ids, mask)
        student = module(ids, mask)
        pooled = (student - target).pow(2).sum(-1).mean()
        parts = {"distill": pooled.detach(), "cosine": F.cosine_similarity(student, target).mean().detach()}
        if self._student_taps is None:
            return pooled, parts
        tokens_loss = token_states_loss(self._student_taps.take(), self._teacher_taps.take(), mask)
        parts["tokens"] = tokens_loss.detach()
        return pooled + self.token_weight * tokens_loss, parts

    @torch.no_grad()
    def _targets(self, indices, ids, mask) -> torch.Tensor:
        teacher = self.teacher.to(ids.device)
        if self._teacher_taps is not None:
            return teacher(ids, mask)  # the token term needs this batch's teacher states anyway
        todo = [n for n, i in enumerate(indices) if i not in self._cache]
        if todo:
            fresh = teacher(ids[todo], mask[todo])
            self._cache.update((indices[n], e) for n, e in zip(todo, fresh, strict=True))
        return torch.stack([self._cache[i] for i in indices]).to(ids.device)

    def evaluate(self, module: nn.Module) -> dict:
        """Fidelity on the held-out sentences, as `edgeclip eval` measures it (teacher side computed once)."""
        from edgeclip.training.evaluate import embedding_fidelity_against, sentence_embeddings

        taps = [tap for tap in (self._student_taps, self._teacher_taps) if tap is not None]
        for tap in taps:
            tap.enabled = False
        try:
            if self._held_out_teacher is None:
                self._held_out_teacher = sentence_embeddings(self.teacher, self.tokenizer, self.corpus.held_out)
            return embedding_fidelity_against(module, self._held_out_teacher, self.tokenizer, self.corpus.held_out)
        finally:
            for tap in taps:
                tap.enabled = True


LENGTH_WINDOW = 16  # batches sorted by length together; larger pads less but makes batches less random


def length_grouped(corpus, lengths: np.ndarray, step: int, batch_size: int, seed: int) -> list[int]:
    """Global batch `step`: the seeded order of `corpus.batch_at`, cut into windows of LENGTH_WINDOW
    batches; each window is sorted by token length, cut into batches, and those served in a seeded
    order. A pure function of (seed, step), so resume and DDP see the same batches."""
    window, slot = divmod(step, LENGTH_WINDOW)
    members = np.asarray(corpus.batch_at(window, batch_size * LENGTH_WINDOW, seed))
    by_length = members[np.argsort(lengths[members], kind="stable")]
    order = np.random.default_rng([seed, window, 1]).permutation(LENGTH_WINDOW)
    chunk = order[slot]
    return by_length[chunk * batch_size : (chunk + 1) * batch_size].tolist()


class LayerTaps:
    """Forward hooks that keep the token states each transformer layer of a BERT encoder outputs."""

    def __init__(self, encoder: nn.Module):
        self.states: list[torch.Tensor] = []
        self.enabled = True
        for layer in encoder.bert.encoder.layer:
            layer.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        if self.enabled:
            self.states.append(output[0] if isinstance(output, tuple) else output)

    def take(self) -> list[torch.Tensor]:
        states, self.states = self.states, []
        return states


def token_states_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Per sentence and layer, |s - t|^2 / |t|^2 over its real (unpadded) tokens; the mean of those.

    Scale-free per layer, and a per-sentence mean, so DDP's average over ranks equals one process."""
    if len(student) != len(teacher):
        raise TrainingError(f"student gave {len(student)} layer outputs, teacher {len(teacher)}; they must match")
    weight = mask.unsqueeze(-1).to(student[0].dtype)
    losses = []
    for s, t in zip(student, teacher, strict=True):
        error = ((s - t).pow(2) * weight).sum(dim=(1, 2))
        losses.append(error / (t.pow(2) * weight).sum(dim=(1, 2)).clamp(min=1e-12))
    return torch.stack(losses).mean()


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
