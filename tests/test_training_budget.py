"""Wall-clock budgets, periodic held-out evaluation and the token-level term of self-taught distillation."""

import argparse
import csv
import json

import numpy as np
import pytest
import torch
from model_fixtures import make_tiny_clip_dir
from training_fixtures import make_tiny_bert_dir, write_caption_folder

from edgeclip.cli.training import (
    BUDGET_STEP_LIMIT,
    add_training_commands,
    parse_duration,
    parse_eval_every,
)
from edgeclip.errors import TrainingError
from edgeclip.models.model_io import load_model
from edgeclip.training.corpus import SentenceCorpus
from edgeclip.training.defaults import TrainConfig
from edgeclip.training.loop import EvalEvery, warmup_cosine
from edgeclip.training.objectives import LENGTH_WINDOW, length_grouped, token_states_loss
from edgeclip.training.student import StudentSpec, run_dir_for, train_student

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def bert_spec(tmp_path_factory):
    bert = make_tiny_bert_dir(tmp_path_factory.mktemp("bert") / "bert")
    return StudentSpec(teacher=str(bert), data="fortunes", max_length=16, token_weight=1.0)


def _weights(path):
    model, _ = load_model(path)
    return model.state_dict()


def _rows(out):
    with open(run_dir_for(out) / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_durations_parse_with_units_and_reject_nonsense():
    assert [parse_duration(t) for t in ("600", "90s", "10m", "1.5h")] == [600, 90, 600, 5400]
    for bad in ("ten", "-5m", "0", ""):
        with pytest.raises(TrainingError, match="time-budget"):
            parse_duration(bad)


def test_eval_every_takes_steps_or_training_time():
    assert parse_eval_every("200") == EvalEvery(steps=200)
    every = parse_eval_every("2m")
    assert every == EvalEvery(seconds=120)
    assert [every.due(s, a, b) for s, a, b in ((1, 0, 100), (2, 100, 121), (3, 121, 200), (4, 200, 240))] == [
        False, True, False, True]
    with pytest.raises(TrainingError, match="--eval-every"):
        parse_eval_every("often")


def test_budget_stops_the_run_at_a_checkpoint_and_a_larger_budget_continues_it(bert_spec, tmp_path):
    cut = train_student(bert_spec, TINY, tmp_path / "cut", progress=False, eval_every=2, time_budget_s=1e-9)
    assert (cut["stopped_by"], cut["steps_done"]) == ("time_budget", 1)
    assert json.loads((run_dir_for(tmp_path / "cut") / "summary.json").read_text())["steps_done"] == 1
    assert _rows(tmp_path / "cut")[0]["eval_mean_cosine"] != ""  # the budget's end is evaluated
    with pytest.raises(TrainingError, match="budget"):
        train_student(bert_spec, TINY, tmp_path / "cut", resume=True, progress=False, time_budget_s=1e-9)
    rest = train_student(bert_spec, TINY, tmp_path / "cut", resume=True, progress=False, time_budget_s=1e6)
    assert (rest["stopped_by"], rest["steps_this_run"]) == ("steps", 3)
    assert [int(r["step"]) for r in _rows(tmp_path / "cut")] == [1, 2, 3, 4]


def test_resume_is_exact_with_a_budget_and_evaluation_on(bert_spec, tmp_path):
    options = dict(progress=False, eval_every=2, time_budget_s=1e6)  # paced by steps: the budget only stops
    whole = train_student(bert_spec, TINY, tmp_path / "whole", **options)
    train_student(bert_spec, TINY, tmp_path / "split", stop_after=3, **options)
    resumed = train_student(bert_spec, TINY, tmp_path / "split", resume=True, **options)
    assert (whole["steps_done"], resumed["steps_this_run"]) == (4, 1)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    whole_rows, split_rows = _rows(tmp_path / "whole"), _rows(tmp_path / "split")
    for column in ("loss", "tokens", "lr", "eval_mean_cosine", "eval_neighbour_recall_at_10"):
        assert [r[column] for r in split_rows] == [r[column] for r in whole_rows], column


def test_the_cosine_follows_the_budget_when_it_is_ahead_of_the_steps():
    factor = warmup_cosine(TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1))
    assert factor(5, time_fraction=0.9) == factor(5)  # warm-up is by steps
    assert factor(20, time_fraction=0.0) == factor(20)
    assert factor(20, time_fraction=1.0) == pytest.approx(0.1)
    assert factor(20, time_fraction=0.5) == pytest.approx(factor(55))
    assert factor(90, time_fraction=0.1) == factor(90)  # steps ahead of the clock: steps rule


def test_eval_every_writes_scores_without_charging_or_changing_training(bert_spec, tmp_path):
    evaluated = train_student(bert_spec, TINY, tmp_path / "eval", progress=False, eval_every=2)
    rows = _rows(tmp_path / "eval")
    scored = [int(r["step"]) for r in rows if r["eval_mean_cosine"]]
    assert scored == [2, 4]
    for row in rows:
        if row["eval_mean_cosine"]:
            assert -1 <= float(row["eval_mean_cosine"]) <= 1
            assert 0 <= float(row["eval_neighbour_recall_at_10"]) <= 1
            assert int(row["eval_samples"]) == 1000
    assert {"tokens", "distill", "cosine"} <= set(rows[0])
    eval_seconds = sum(float(r["eval_s"]) for r in rows if r["eval_s"])
    assert evaluated["train_seconds"] <= evaluated["seconds_this_run"] - eval_seconds + 0.05
    assert float(rows[-1]["elapsed_s"]) <= evaluated["train_seconds"]
    assert (run_dir_for(tmp_path / "eval") / "evaluation.png").stat().st_size > 1000
    # Evaluating mid-run leaves the trained weights exactly as a run without it.
    train_student(bert_spec, TINY, tmp_path / "plain", progress=False)
    a, b = _weights(tmp_path / "eval"), _weights(tmp_path / "plain")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert "eval_mean_cosine" not in _rows(tmp_path / "plain")[0]


def test_eval_every_is_refused_for_clip_teachers(tmp_path):
    spec = StudentSpec(teacher=str(make_tiny_clip_dir(tmp_path / "clip")),
                       data=str(write_caption_folder(tmp_path / "data", count=8)))
    with pytest.raises(TrainingError, match="eval-every"):
        train_student(spec, TINY, tmp_path / "out", progress=False, eval_every=2)


def test_cli_time_budget_ends_the_run_and_says_so(bert_spec, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_training_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(["train", "--teacher", bert_spec.teacher, "--data", "fortunes", "--max-length", "16",
                              "--steps", "50", "--batch-size", "4", "--time-budget", "0.000001m", "--no-progress",
                              "--out", str(tmp_path / "cli")])
    args.func(args)
    assert "1 steps (time budget reached)" in capsys.readouterr().out
    summary = json.loads((run_dir_for(tmp_path / "cli") / "summary.json").read_text())
    assert (summary["steps_done"], summary["stopped_by"]) == (1, "time_budget")


def test_a_budget_without_steps_paces_the_cosine_to_its_floor(bert_spec, tmp_path):
    """No --steps: the budget is the schedule, so the one step it allows leaves the LR at the floor."""
    parser = argparse.ArgumentParser()
    add_training_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(["train", "--teacher", bert_spec.teacher, "--data", "fortunes", "--max-length", "16",
                              "--batch-size", "4", "--warmup", "1", "--lr", "1e-3", "--time-budget", "1e-9",
                              "--no-progress", "--out", str(tmp_path / "paced")])
    args.func(args)
    state = torch.load(run_dir_for(tmp_path / "paced") / "train_state.pt", weights_only=True)
    assert state["config"]["steps"] == BUDGET_STEP_LIMIT
    min_lr = 1e-3 * state["config"]["min_lr_ratio"]
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == pytest.approx([min_lr, min_lr])


def test_token_states_loss_is_relative_and_ignores_padding():
    teacher = [torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert token_states_loss(teacher, teacher, mask) == 0
    padded_only = [t.clone() for t in teacher]
    for t in padded_only:
        t[0, 3:] += 100.0
    assert token_states_loss(padded_only, teacher, mask) == 0
    doubled = [2 * t for t in teacher]
    # |2t - t|^2 / |t|^2 = 1 per layer, whatever the scale of t.
    torch.testing.assert_close(token_states_loss([10 * t for t in doubled], [10 * t for t in teacher], mask),
                               torch.tensor(1.0))
    with pytest.raises(TrainingError, match="layer outputs"):
        token_states_loss(teacher[:2], teacher, mask)


def test_length_grouped_batches_cover_their_window_once_and_pad_less():
    rng = np.random.default_rng(0)
    corpus = SentenceCorpus(train=[f"s{i}" for i in range(1000)], held_out=[])
    lengths = rng.integers(5, 60, size=1000)
    batch_size = 8
    window = [length_grouped(corpus, lengths, step, batch_size, seed=3) for step in range(LENGTH_WINDOW)]
    flat = [i for batch in window for i in batch]
    assert sorted(flat) == sorted(corpus.batch_at(0, batch_size * LENGTH_WINDOW, 3))
    assert window == [length_grouped(corpus, lengths, step, batch_size, seed=3) for step in range(LENGTH_WINDOW)]
    random_batches = [corpus.batch_at(step, batch_size, 3) for step in range(LENGTH_WINDOW)]
    padded_tokens = [len(b) * lengths[b].max() for b in window]
    assert sum(padded_tokens) < 0.75 * sum(len(b) * lengths[b].max() for b in random_batches)
