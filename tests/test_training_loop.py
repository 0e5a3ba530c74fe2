"""The QAT loop: exact resume, logs and curves, and DDP under torchrun with two CPU processes."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from model_fixtures import make_tiny_clip_dir
from training_fixtures import make_tiny_bert_dir, write_caption_folder

from edgeclip.errors import TrainingError
from edgeclip.models.model_io import load_model
from edgeclip.training.defaults import TrainConfig
from edgeclip.training.loop import warmup_cosine
from edgeclip.training.student import StudentSpec, run_dir_for, train_student

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = TrainConfig(steps=6, batch_size=8, lr=1e-3, warmup_steps=2, checkpoint_every=3)


@pytest.fixture(scope="module")
def clip_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    teacher = make_tiny_clip_dir(root / "teacher")
    table = write_caption_folder(root / "data", count=12, broken=2)
    return StudentSpec(teacher=str(teacher), data=str(table))


def _weights(path):
    model, _ = load_model(path)
    return model.state_dict()


def test_resumed_run_equals_uninterrupted_run_bitwise(clip_setup, tmp_path):
    whole = train_student(clip_setup, TINY, tmp_path / "whole", progress=False)
    train_student(clip_setup, TINY, tmp_path / "split", progress=False, stop_after=3)
    resumed = train_student(clip_setup, TINY, tmp_path / "split", resume=True, progress=False)
    assert (whole["steps_done"], resumed["steps_this_run"]) == (6, 3)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # The logs of the resumed run continue the first one without repeating or losing steps.
    with open(run_dir_for(tmp_path / "split") / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    with open(run_dir_for(tmp_path / "whole") / "metrics.csv") as handle:
        whole_rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert [r["loss"] for r in rows] == [r["loss"] for r in whole_rows]
    assert {"task", "crd", "icl", "fd", "samples_per_s", "skipped"} <= set(rows[0])
    assert int(rows[-1]["skipped"]) > 0  # the two broken images were met, and counted
    assert (run_dir_for(tmp_path / "split") / "losses.png").stat().st_size > 1000


def test_training_moves_the_student_toward_the_teacher(clip_setup, tmp_path):
    config = TrainConfig(steps=12, batch_size=8, lr=2e-3, warmup_steps=2, checkpoint_every=100)
    summary = train_student(clip_setup, config, tmp_path / "student", progress=False)
    with open(run_dir_for(tmp_path / "student") / "metrics.csv") as handle:
        fd = [float(r["fd"]) for r in csv.DictReader(handle)]
    assert sum(fd[-3:]) < sum(fd[:3])
    assert summary["ternary_fraction_linear"] == 1.0


def test_resume_refuses_changed_settings(clip_setup, tmp_path):
    train_student(clip_setup, TINY, tmp_path / "run", progress=False, stop_after=3)
    changed = TrainConfig(**{**TINY.to_dict(), "lr": 5e-3})
    with pytest.raises(TrainingError, match="lr"):
        train_student(clip_setup, changed, tmp_path / "run", resume=True, progress=False)


def test_resume_without_state_says_so(clip_setup, tmp_path):
    with pytest.raises(TrainingError, match="no train_state.pt"):
        train_student(clip_setup, TINY, tmp_path / "fresh", resume=True, progress=False)


def test_schedule_warms_up_then_decays_to_the_floor():
    factor = warmup_cosine(TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1))
    values = [factor(s) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[9:], values[10:], strict=False))
    assert values[-1] == pytest.approx(0.1, abs=1e-3)


CLI = (
    "import argparse, sys; from edgeclip.cli.training import add_training_commands; "
    "p = argparse.ArgumentParser(); add_training_commands(p.add_subparsers(required=True)); "
    "a = p.parse_args(); a.func(a)"
)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    """Self-taught distillation's loss is a per-sample mean, so 2 ranks x 4 sentences = 1 x 8 sentences."""
    bert = make_tiny_bert_dir(tmp_path / "bert")
    args = ["train", "--teacher", str(bert), "--data", "fortunes", "--steps", "3", "--batch-size", "8",
            "--lr", "1e-3", "--warmup", "1", "--checkpoint-every", "2", "--max-length", "16", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "--no-python", sys.executable, "-c", CLI]
    subprocess.run([*torchrun, *args, "--out", str(tmp_path / "ddp")], check=True, env=env, timeout=120)
    subprocess.run([sys.executable, "-c", CLI, *args, "--out", str(tmp_path / "single")], check=True, env=env,
                   timeout=120)
    summary = json.loads((run_dir_for(tmp_path / "ddp") / "summary.json").read_text())
    assert (summary["world"], summary["steps_done"]) == (2, 3)
    ddp, single = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5, msg=name)


def test_progress_bar_shows_the_sample_rate_metrics_csv_records(clip_setup, tmp_path, capsys):
    train_student(clip_setup, TrainConfig(steps=2, batch_size=8, lr=1e-3, warmup_steps=1), tmp_path / "s")
    bar = capsys.readouterr().err
    with open(run_dir_for(tmp_path / "s") / "metrics.csv") as handle:
        last = list(csv.DictReader(handle))[-1]
    shown = [float(v) for v in re.findall(r"samples_s=([\d.e+-]+)", bar)]
    assert shown and shown[-1] == pytest.approx(float(last["samples_per_s"]), rel=0.01)


def test_steps_inside_the_warm_up_are_warned_about(clip_setup, tmp_path, capsys):
    train_student(clip_setup, TrainConfig(steps=2, batch_size=8, lr=1e-3, warmup_steps=5), tmp_path / "s",
                  progress=False)
    assert "2 steps end inside the 5-step warm-up" in capsys.readouterr().err
    train_student(clip_setup, TrainConfig(steps=3, batch_size=8, lr=1e-3, warmup_steps=2), tmp_path / "t",
                  progress=False)
    assert "warm-up" not in capsys.readouterr().err


def test_train_help_shows_every_schedule_default(capsys):
    from edgeclip.cli import main
    from edgeclip.training.defaults import EMBEDDING_TRAINING, STUDENT_TRAINING

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for field in ("steps", "batch_size", "lr", "warmup_steps"):
        clip, embedding = getattr(STUDENT_TRAINING, field), getattr(EMBEDDING_TRAINING, field)
        assert f"(default {clip} for CLIP teachers, {embedding} for embedding teachers)" in shown, field
