"""`edgeclip train-teacher`: train and cache the built-in Fashion-MNIST CLIP teacher.

The MiniLM text tower stays frozen, so the 80 prompt embeddings (10 classes x 8 templates) are
computed once; each step trains only the small ViT and the two projections.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from edgeclip.models.demo import demo_teacher_dir, new_demo_clip
from edgeclip.models.dual import DualEncoder
from edgeclip.models.families import family_of
from edgeclip.training.data import load_fashion_mnist
from edgeclip.training.defaults import TEACHER_TRAINING, TrainConfig
from edgeclip.training.evaluate import zero_shot_classification
from edgeclip.training.loop import train
from edgeclip.training.objectives import CachedCaptionClip, TeacherTraining


def train_teacher(out=None, config: TrainConfig = TEACHER_TRAINING, force: bool = False, progress: bool = True,
                  eval_limit: int | None = None) -> dict:
    """Train (or reuse the cached) demo teacher; returns its test accuracy and training time."""
    from edgeclip.models.model_io import save_model

    out = Path(out) if out is not None else demo_teacher_dir(must_exist=False)
    if (out / "config.json").is_file() and not force:
        return {"path": str(out), "cached": True}
    began = time.perf_counter()
    model = new_demo_clip(seed=config.seed)
    train_data = load_fashion_mnist("train")
    captions = [p for c in range(len(train_data.classes)) for p in train_data.prompts(c)]
    with torch.no_grad():
        dual = DualEncoder(model)
        tokens = dual.tokenize(captions)
        sentences = model.text_model(tokens["input_ids"], tokens["attention_mask"])
    objective = TeacherTraining(CachedCaptionClip(model, captions, sentences), train_data)
    run_dir = out.with_name(out.name + ".train")
    summary = train(objective, config, run_dir, progress=progress)
    train_seconds = time.perf_counter() - began
    model = model.cpu().eval()
    accuracy = zero_shot_classification(DualEncoder(model), load_fashion_mnist("test"), limit=eval_limit)
    save_model(model, out, family_of(model), model.config_dict(), None, replace=force)
    return {"path": str(out), "cached": False, "train_seconds": train_seconds, **summary, **accuracy}
