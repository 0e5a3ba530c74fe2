"""How much work each step of the demo does: the full demo, or `--quick` (the test suite's smoke run).

Chosen so the full demo fits 20 minutes on 2 cores from nothing (teacher training included) and
`--quick` fits 3: quick trains a tiny teacher of its own (never the cached real one), a few student
steps, evaluates on a slice of the test split and builds its bundles without the fp32 baseline (two
fewer compiles, so no speed-up figures; sizes still compare with the fp32 weights). The embedding
section (ternary MiniLM, its rpi4 bundle, on-board search) runs 3 distillation steps and a
40-sentence index in quick, 120 steps and 400 sentences in full: under qemu-user the board's float
arithmetic is software, about half a second a sentence on 2 threads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgeclip.training.defaults import EMBEDDING_TRAINING, STUDENT_TRAINING, TEACHER_TRAINING, TrainConfig


@dataclass(frozen=True)
class Plan:
    name: str
    teacher: TrainConfig
    teacher_is_cached_default: bool  # the real `edgeclip train-teacher` cache, or a demo-only teacher
    student: TrainConfig
    eval_limit: int | None  # Fashion-MNIST test images per evaluation (None: all 10,000)
    baseline: str | None  # the fp32 baseline module in the bundles, for speed and memory ratios
    fashion_images: int  # real Fashion-MNIST test images classified with the host bundle
    photos: int  # scikit-image sample photos classified with it
    host_runs: int
    emulated_runs: int
    sentence: TrainConfig  # the ternary MiniLM's self-taught distillation
    fidelity_sentences: int  # held-out fortunes it is scored on against the float MiniLM
    index_sentences: int  # the corpus the emulated board indexes
    index_queries: int  # held-out fortunes it answers


FULL = Plan(
    name="full",
    teacher=TEACHER_TRAINING,
    teacher_is_cached_default=True,
    student=replace(STUDENT_TRAINING, steps=300, checkpoint_every=300),
    eval_limit=None,
    baseline="fp32",
    fashion_images=8,
    photos=4,
    host_runs=20,
    emulated_runs=1,
    sentence=replace(EMBEDDING_TRAINING, steps=120, warmup_steps=10, checkpoint_every=120),
    fidelity_sentences=1000,
    index_sentences=400,
    index_queries=20,
)

QUICK = Plan(
    name="quick",
    teacher=replace(TEACHER_TRAINING, steps=60, warmup_steps=10, checkpoint_every=60),
    teacher_is_cached_default=False,
    student=replace(STUDENT_TRAINING, steps=12, warmup_steps=3, checkpoint_every=12),
    eval_limit=500,
    baseline=None,
    fashion_images=4,
    photos=2,
    host_runs=5,
    emulated_runs=1,
    sentence=replace(EMBEDDING_TRAINING, steps=3, warmup_steps=1, checkpoint_every=3),
    fidelity_sentences=50,
    index_sentences=40,
    index_queries=5,
)


def plan_for(quick: bool) -> Plan:
    return QUICK if quick else FULL
