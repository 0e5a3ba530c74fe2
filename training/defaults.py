"""Training schedules as plain data: the dataclass and the built-in schedule of each verb.

Standard library only, so `edgeclip train --help` can print every default without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # global: split across ranks under torchrun
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    amp: bool = True  # used only on CUDA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# The built-in Fashion-MNIST CLIP teacher (`edgeclip train-teacher`).
TEACHER_TRAINING = TrainConfig(steps=1000, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_steps=50,
                               min_lr_ratio=0.02, grad_clip=1.0, seed=0, checkpoint_every=200)
# QAT + distillation of a CLIP student.
STUDENT_TRAINING = TrainConfig(steps=1000, batch_size=64, lr=5e-4, warmup_steps=50, checkpoint_every=100)
# Self-taught distillation of a sentence encoder (MiniLM); with --time-budget and no --steps the cosine
# runs over the budget instead. lr 1e-3 trailed 3e-4 (docs/training.md).
EMBEDDING_TRAINING = TrainConfig(steps=600, batch_size=32, lr=3e-4, warmup_steps=20, checkpoint_every=100)
