"""Distillation losses against their textbook definitions and their limiting cases."""

import pytest
import torch
from torch.nn import functional as F

from edgeclip.errors import TrainingError
from edgeclip.training.losses import LossWeights, clip_distillation, contrastive, interactive, relational


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_contrastive_with_unique_captions_is_clip_infonce():
    image, text, scale = _unit(6, 8, seed=1), _unit(6, 8, seed=2), torch.tensor(10.0)
    logits = scale * image @ text.t()
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    torch.testing.assert_close(contrastive(image, text, target, scale), expected)


def test_shared_captions_are_not_negatives():
    """Two images of one class share a caption: matching both to it is the optimum, not a penalty."""
    text = _unit(2, 4, seed=3)
    image = torch.stack([text[0], text[0], text[1]])
    index = torch.tensor([0, 0, 1])
    good = contrastive(image, text, index, torch.tensor(50.0))
    swapped = contrastive(image, text, torch.tensor([1, 0, 1]), torch.tensor(50.0))
    assert good < 0.75 and swapped > good + 1  # each caption's mass is split over its 2 images: log 2 / 2


def test_relational_is_zero_for_identical_models_and_positive_otherwise():
    teacher = (_unit(5, 8, seed=4), _unit(5, 8, seed=5), torch.tensor(20.0))
    assert relational(teacher, teacher, tau=2.0) == pytest.approx(0.0, abs=1e-6)
    student = (_unit(5, 8, seed=6), teacher[1], teacher[2])
    assert relational(student, teacher, tau=2.0) > 0.01


def test_interactive_pairs_student_with_teacher_embeddings():
    teacher = (_unit(4, 8, seed=7), _unit(4, 8, seed=8), torch.tensor(10.0))
    student = (_unit(4, 8, seed=9), _unit(4, 8, seed=10), torch.tensor(10.0))
    index = torch.arange(4)
    expected = (contrastive(student[0], teacher[1], index, student[2]) + contrastive(teacher[0], student[1], index, student[2])) / 2
    torch.testing.assert_close(interactive(student, teacher, index), expected)


def test_weights_switch_losses_and_scale_the_total():
    teacher = (_unit(4, 8, seed=11), _unit(4, 8, seed=12), torch.tensor(10.0))
    student = (_unit(4, 8, seed=13), _unit(4, 8, seed=14), torch.tensor(10.0))
    index = torch.arange(4)
    total, parts = clip_distillation(student, teacher, index, LossWeights())
    assert set(parts) == {"task", "crd", "icl", "fd"}
    expected = parts["task"] + parts["crd"] + parts["icl"] + 2000 * parts["fd"]
    torch.testing.assert_close(total, expected)
    total, parts = clip_distillation(student, teacher, index, LossWeights.only("fd", fd=3.0))
    assert set(parts) == {"fd"} and torch.allclose(total, 3.0 * parts["fd"])


def test_distillation_losses_need_a_teacher_and_at_least_one_loss():
    student = (_unit(2, 4), _unit(2, 4, seed=1), torch.tensor(1.0))
    with pytest.raises(TrainingError, match="need a teacher"):
        clip_distillation(student, None, torch.arange(2), LossWeights())
    with pytest.raises(TrainingError, match="switched off"):
        clip_distillation(student, student, torch.arange(2), LossWeights(task=0, crd=0, icl=0, fd=0))
    with pytest.raises(TrainingError, match="unknown loss"):
        LossWeights.only("kd")
