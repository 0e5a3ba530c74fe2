"""`edgeclip train` and `edgeclip eval`: from a teacher spec to a ternary student, and its scores.

Trainer state, metrics.csv and losses.png go to `<out>.train/` next to the checkpoint directory,
because a checkpoint directory holds only its own two files.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from edgeclip.errors import TrainingError
from edgeclip.models.families.base import CLIP, ModelFamily
from edgeclip.quant import TernaryConfig, model_stats, quantize
from edgeclip.training.defaults import EMBEDDING_TRAINING, STUDENT_TRAINING, TrainConfig
from edgeclip.training.loop import EvalEvery, train
from edgeclip.training.losses import LossWeights

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class StudentSpec:
    teacher: str = "demo"
    data: str | None = None  # default: fashion-mnist (CLIP) or fortunes (embedding models)
    quant: TernaryConfig = TernaryConfig()
    losses: LossWeights = LossWeights()
    max_length: int = 48  # sentence tokens for self-taught distillation; fortunes rarely need more
    token_weight: float = 1.0  # token-state term of self-taught distillation (0: off); 1 measured better


def run_dir_for(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".train")


def default_schedule(family: ModelFamily) -> TrainConfig:
    return STUDENT_TRAINING if family.kind == CLIP else EMBEDDING_TRAINING


def train_student(spec: StudentSpec, config: TrainConfig | dict, out, resume: bool = False, force: bool = False,
                  progress: bool = True, stop_after: int | None = None, time_budget_s: float | None = None,
                  pace_by_budget: bool = False, eval_every: int | EvalEvery = 0) -> dict:
    """QAT + distillation of `spec.teacher` into a ternary student saved at `out`.

    `config` is a whole schedule, or a dict of changes to the teacher family's default schedule.
    """
    from edgeclip.models.checkpoint import check_writable
    from edgeclip.models.model_io import save_model
    from edgeclip.models.sources import load_source

    check_writable(Path(out), replace=resume or force)  # before the training, not after it

    teacher, family, arch = load_source(spec.teacher)
    if family.kind != CLIP and family.text is None:  # an image embedder: no sentence distillation for it
        raise TrainingError(f"{family.name} models ({family.kind}) cannot be trained yet; "
                            "ternarize them with `edgeclip ternarize` and bundle that checkpoint")
    if isinstance(config, dict):
        config = replace(default_schedule(family), **config)
    student = copy.deepcopy(teacher)
    report = quantize(student, spec.quant)
    objective = build_objective(family, teacher, student, spec)
    run_dir = run_dir_for(out)
    summary = train(objective, config, run_dir, resume=resume, progress=progress, stop_after=stop_after,
                    time_budget_s=time_budget_s, pace_by_budget=pace_by_budget, eval_every=eval_every)
    summary.update(teacher=spec.teacher, family=family.name, quantized_layers=len(report.quantized),
                   ternary_fraction_linear=model_stats(student)["ternary_fraction_linear"])
    if summary["rank"] == 0:
        save_model(student.cpu(), out, family, arch, spec.quant, replace=resume or force)
        (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_objective(family: ModelFamily, teacher: nn.Module, student: nn.Module, spec: StudentSpec):
    from edgeclip.training.objectives import ClipDistillation, SelfTaught

    data = spec.data or family.default_data
    if family.kind == CLIP:
        from edgeclip.models.dual import DualEncoder
        from edgeclip.training.data import open_pairs

        if data == "fortunes":
            raise TrainingError("a CLIP teacher needs image-text data, not the sentence corpus 'fortunes'")
        return ClipDistillation(DualEncoder(student), DualEncoder(teacher), open_pairs(data, "train"), spec.losses)
    if data != "fortunes":
        raise TrainingError(f"embedding models distil on the built-in sentence corpus; pass --data fortunes, not {data!r}")
    from edgeclip.training.corpus import load_fortunes

    return SelfTaught(student, teacher, tokenizer_for_spec(spec.teacher), load_fortunes(), spec.max_length,
                      spec.token_weight)


def tokenizer_for_spec(spec: str):
    """A BERT directory brings its own tokenizer; 'minilm' and checkpoints use all-MiniLM-L6-v2's."""
    from edgeclip.models.wordpiece import minilm_tokenizer

    path = Path(spec)
    if path.is_dir() and any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        return minilm_tokenizer(path)
    return minilm_tokenizer()


# ---- evaluation ----------------------------------------------------------------------------------


def evaluate(model_spec: str, data: str | None = None, teacher: str | None = None, limit: int | None = None) -> dict:
    """clip_benchmark-shaped result for a CLIP model (classification or retrieval) or a sentence encoder."""
    from edgeclip.models.sources import open_model
    from edgeclip.training import evaluate as ev

    model, family = open_model(model_spec)
    data = data or family.default_data
    if family.kind == CLIP:
        from edgeclip.models.dual import DualEncoder
        from edgeclip.training.data import LabeledImages, open_pairs

        source = open_pairs(data, "test")
        if isinstance(source, LabeledImages):
            metrics = ev.zero_shot_classification(DualEncoder(model), source, limit)
            return ev.result(source.name, model_spec, "zeroshot_classification", metrics)
        metrics = ev.retrieval(DualEncoder(model), source, limit or 1000)
        return ev.result(source.name, model_spec, "zeroshot_retrieval", {**metrics, "skipped": source.skipped})
    teacher_model, _ = open_model(teacher or "minilm")
    name, sentences = fidelity_sentences(data)
    metrics = ev.embedding_fidelity(model, teacher_model, tokenizer_for_spec(teacher or "minilm"), sentences[:limit])
    return ev.result(name, model_spec, "embedding_fidelity", metrics)


def fidelity_sentences(data: str) -> tuple[str, list[str]]:
    """(dataset name, sentences) a sentence encoder is evaluated on; neither set enters training."""
    from edgeclip.training.corpus import load_fortunes, load_wordnet_glosses

    if data == "fortunes":
        return "fortunes-held-out", load_fortunes().held_out
    if data == "wordnet":
        return "wordnet-glosses", load_wordnet_glosses()
    raise TrainingError(f"sentence encoders are evaluated on 'fortunes' or 'wordnet', not {data!r}")
