"""Demo steps 1-2: the teacher, its plain ternarization (PTQ) and the QAT + distillation student.

The full demo uses the teacher `edgeclip train-teacher` caches; `--quick` trains a tiny one of its
own in the demo cache, so a smoke run never stands in for the real teacher. The student is cached
by the teacher's bytes, the student settings and the edgeclip sources.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from edgeclip.demo import cache
from edgeclip.demo.plan import Plan

TRAINER_STATE = ("train_state.pt", "objective_state.rank0.pt")  # resumable state: large, not needed after


def teacher(plan: Plan) -> tuple[Path, str]:
    """(teacher checkpoint, how it was obtained)."""
    from edgeclip.training.teacher import train_teacher

    if plan.teacher_is_cached_default:
        result = train_teacher(None, plan.teacher, eval_limit=plan.eval_limit)
        return Path(result["path"]), "cached by `edgeclip train-teacher`" if result["cached"] else _trained(result)

    def make(folder: Path) -> None:
        train_teacher(folder / "teacher", plan.teacher, force=True, eval_limit=plan.eval_limit)
        _drop_trainer_state(folder / "teacher.train")

    entry_key = cache.key("training", "teacher", plan.teacher.to_dict(), plan.eval_limit, cache.tree_digest(Path(__file__)))
    folder, hit = cache.cached("teachers", entry_key, make)
    note = f"{plan.teacher.steps}-step demo-only teacher"
    return folder / "teacher", f"{note}, cached" if hit else f"{note}, trained"


def _trained(result: dict) -> str:
    return f"trained in {result['train_seconds']:.0f} s (top-1 {100 * result['top1']:.1f} %), now cached"


def ptq(teacher_dir: Path, out: Path) -> Path:
    """Plain q-all ternarization of the teacher, no training: what QAT has to improve on."""
    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    return ternarize_source(str(teacher_dir), TernaryConfig(policy="q-all"), out)[1]


def student(plan: Plan, teacher_dir: Path, out: Path) -> tuple[Path, str, dict]:
    """(student checkpoint copied to `out`, note, training summary): q-all, QAT + KD on Fashion-MNIST."""
    from edgeclip.quant import TernaryConfig
    from edgeclip.training.student import StudentSpec, train_student

    spec = StudentSpec(teacher=str(teacher_dir), data="fashion-mnist", quant=TernaryConfig(policy="q-all"))
    settings = {k: v for k, v in asdict(spec).items() if k != "teacher"}
    entry_key = cache.key("training", "student", cache.tree_digest(teacher_dir), settings, plan.student.to_dict(),
                          cache.tree_digest(Path(__file__)))

    def make(folder: Path) -> None:
        train_student(spec, plan.student, folder / "student")
        _drop_trainer_state(folder / "student.train")

    folder, hit = cache.cached("students", entry_key, make)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder / "student", out)
    shutil.copytree(folder / "student.train", out.with_name(out.name + ".train"), dirs_exist_ok=True)
    summary = _summary(folder / "student.train")
    note = f"{plan.student.steps} steps of QAT + KD"
    return out, f"{note}, cached" if hit else f"{note} in {summary.get('seconds_this_run', 0):.0f} s", summary


def _summary(run_dir: Path) -> dict:
    from edgeclip.training.student import SUMMARY_FILE

    path = run_dir / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _drop_trainer_state(run_dir: Path) -> None:
    for name in TRAINER_STATE:
        (run_dir / name).unlink(missing_ok=True)
