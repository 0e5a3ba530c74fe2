"""Distillation losses for a ternary CLIP student, and the one for embedding models.

A batch holds B images and U <= B distinct captions; `text_index[b]` is the caption of image b.
Deduplicating captions keeps class-prompt data (many images, few captions) cheap and, unlike the
usual B x B target, never treats a same-class image as a negative. With unique captions
(U = B, text_index = arange) every loss reduces to its textbook form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from edgeclip.errors import TrainingError

LOSS_NAMES = ("task", "crd", "icl", "fd")


@dataclass(frozen=True)
class LossWeights:
    """Weight per loss; 0 switches a loss off. FD's 2000 follows TernaryCLIP (MSE of unit vectors is tiny)."""

    task: float = 1.0
    crd: float = 1.0
    icl: float = 1.0
    fd: float = 2000.0
    tau: float = 1.0  # CRD temperature applied on top of the logit scales

    def active(self) -> tuple[str, ...]:
        return tuple(name for name in LOSS_NAMES if getattr(self, name) > 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def only(cls, *names: str, **overrides) -> LossWeights:
        """Weights with just `names` on (at their defaults), e.g. `LossWeights.only("task", "crd")`."""
        unknown = set(names) - set(LOSS_NAMES)
        if unknown:
            raise TrainingError(f"unknown loss {sorted(unknown)}; choose from {', '.join(LOSS_NAMES)}")
        defaults = cls()
        values = {name: getattr(defaults, name) if name in names else 0.0 for name in LOSS_NAMES}
        return cls(**{**values, **overrides})


def positives(text_index: torch.Tensor, num_texts: int) -> torch.Tensor:
    """[U, B] float mask: caption u describes image b."""
    return (text_index.unsqueeze(0) == torch.arange(num_texts, device=text_index.device).unsqueeze(1)).float()


def contrastive(image: torch.Tensor, text: torch.Tensor, text_index: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: each image picks its caption; each caption picks (all) its images."""
    logits = scale * image @ text.t()  # [B, U]
    image_to_text = F.cross_entropy(logits, text_index)
    mask = positives(text_index, text.shape[0])
    log_probs = F.log_softmax(logits.t(), dim=1)  # [U, B]
    text_to_image = -((mask * log_probs).sum(1) / mask.sum(1)).mean()
    return (image_to_text + text_to_image) / 2


def relational(student: tuple, teacher: tuple, tau: float) -> torch.Tensor:
    """CRD: KL(teacher || student) between similarity distributions, image->text and text->image."""
    (s_image, s_text, s_scale), (t_image, t_text, t_scale) = student, teacher
    s_logits = s_scale * s_image @ s_text.t() / tau
    t_logits = t_scale * t_image @ t_text.t() / tau
    loss = 0.0
    for s, t in ((s_logits, t_logits), (s_logits.t(), t_logits.t())):
        loss = loss + F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), log_target=True, reduction="batchmean")
    return loss * tau**2 / 2


def interactive(student: tuple, teacher: tuple, text_index: torch.Tensor) -> torch.Tensor:
    """ICL: student images against teacher captions, and student captions against teacher images."""
    (s_image, s_text, s_scale), (t_image, t_text, _) = student, teacher
    return (contrastive(s_image, t_text, text_index, s_scale) + contrastive(t_image, s_text, text_index, s_scale)) / 2


def feature(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """FD / self-taught distillation: mean squared error between embeddings."""
    return F.mse_loss(student, teacher)


def clip_distillation(student: tuple, teacher: tuple | None, text_index: torch.Tensor, weights: LossWeights):
    """Weighted sum of the active losses -> (total, {name: unweighted value})."""
    if teacher is None and set(weights.active()) - {"task"}:
        raise TrainingError("CRD, ICL and FD need a teacher; pass --teacher or turn them off")
    parts = {}
    if weights.task > 0:
        parts["task"] = contrastive(student[0], student[1], text_index, student[2])
    if weights.crd > 0:
        parts["crd"] = relational(student, teacher, weights.tau)
    if weights.icl > 0:
        parts["icl"] = interactive(student, teacher, text_index)
    if weights.fd > 0:
        parts["fd"] = (feature(student[0], teacher[0]) + feature(student[1], teacher[1])) / 2
    if not parts:
        raise TrainingError("every loss is switched off; give at least one a positive weight")
    total = sum(getattr(weights, name) * value for name, value in parts.items())
    return total, {name: value.detach() for name, value in parts.items()}
