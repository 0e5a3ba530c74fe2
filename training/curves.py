"""PNGs of a run's metrics.csv: the losses over steps, and held-out scores over training minutes."""

from __future__ import annotations

import csv
from pathlib import Path

NOT_LOSSES = {"step", "lr", "grad_norm", "samples_per_s", "skipped", "elapsed_s"}
NOT_SCORES = {"eval_s", "eval_samples"}


def read_metrics(metrics_csv: Path) -> list[dict]:
    with open(metrics_csv, newline="") as handle:
        return list(csv.DictReader(handle))


def evaluation_rows(metrics_csv: Path) -> list[dict]:
    """The rows that carry held-out scores, numbers as floats (empty cells dropped)."""
    return [{k: float(v) for k, v in row.items() if v != ""} for row in read_metrics(metrics_csv)
            if row.get("eval_s")]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def plot_losses(metrics_csv: Path, png: Path) -> None:
    """One curve per logged loss over steps, log scale (losses span orders of magnitude)."""
    rows = read_metrics(metrics_csv)
    if not rows:
        return
    plt = _pyplot()
    names = [n for n in rows[0] if n not in NOT_LOSSES and not n.startswith("eval_")]
    steps = [int(r["step"]) for r in rows]
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in names:
        axis.plot(steps, [max(float(r[name]), 1e-12) for r in rows], label=name)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (unweighted parts)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def plot_evaluation(runs: dict[str, Path], png: Path) -> None:
    """Each held-out score of each run against training minutes (evaluation time excluded)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, metrics_csv in runs.items():
        rows = evaluation_rows(metrics_csv)
        scores = [n for n in (rows[0] if rows else {}) if n.startswith("eval_") and n not in NOT_SCORES]
        minutes = [r["elapsed_s"] / 60 for r in rows]
        for name in scores:
            axis.plot(minutes, [r[name] for r in rows], marker="o", markersize=3,
                      label=f"{label}: {name.removeprefix('eval_')}")
    axis.set_xlabel("training wall minutes (evaluation excluded)")
    axis.set_ylabel("held-out score")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
