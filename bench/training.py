"""Training measurements (not a test): MiniLM self-taught distillation against wall-clock budgets,
and the loss ablation of the Fashion-MNIST QAT student.

    .venv/bin/python bench/training.py [--only minilm|ablation] [--budgets 10m,30m] [--threads 2]
                                       [--ablation-steps 300] [--ablation-jobs 1] [--work DIR]

Every run is the real CLI (`edgeclip train` / `eval` / `ternarize`) in its own process, so each
entry in the JSON carries the command that reproduces it. MiniLM runs evaluate the 1,000 held-out
sentences at even intervals of training time (`--eval-every`, not charged to the budget), which
gives the fidelity-vs-minutes curve; each final student is also scored on 1,000 WordNet glosses
(`edgeclip eval --data wordnet`), a text source training never sees. The box may be shared, so the 1-minute load average is
sampled throughout and stored beside each run. Writes bench/results/training-<host>.json (a part
run alone replaces only its own part) and training-<host>-minilm.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgeclip.cli.training import parse_duration
from edgeclip.fsutil import fsync_dir, write_synced
from edgeclip.hostinfo import cpu_model
from edgeclip.training.curves import evaluation_rows, plot_evaluation

RESULTS = Path(__file__).resolve().parent / "results"
EDGECLIP = [sys.executable, "-m", "edgeclip.cli"]
# Everything else is the documented default for embedding teachers; the cosine runs over the budget.
MINILM_OPTIONS = ["--teacher", "minilm", "--data", "fortunes", "--policy", "q-all"]
ABLATION = {  # label -> loss weights; the rest of the schedule is the CLIP student default
    "task only": {"task": 1, "crd": 0, "icl": 0, "fd": 0},
    "+CRD": {"task": 1, "crd": 1, "icl": 0, "fd": 0},
    "+ICL": {"task": 1, "crd": 0, "icl": 1, "fd": 0},
    "+FD": {"task": 1, "crd": 0, "icl": 0, "fd": 2000},
    "all": {"task": 1, "crd": 1, "icl": 1, "fd": 2000},
}


class LoadSampler:
    """The 1-minute load average every `period` seconds, in a daemon thread."""

    def __init__(self, period: float = 10.0):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), os.getloadavg()[0]))
            self._stop.wait(period)

    def between(self, start: float, end: float) -> dict:
        values = [load for stamp, load in self.samples if start <= stamp <= end] or [os.getloadavg()[0]]
        return {"load1_mean": statistics.mean(values), "load1_max": max(values), "load1_samples": len(values)}

    def stop(self) -> None:
        self._stop.set()


def run(command: list[str], threads: int, log: Path) -> float:
    """Run one CLI command with `threads` OpenMP threads; its output goes to `log`. Returns seconds."""
    began = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, stdout=handle,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}; see {log}")
    return time.perf_counter() - began


def shown(command: list[str], threads: int) -> str:
    return f"OMP_NUM_THREADS={threads} edgeclip " + " ".join(command[len(EDGECLIP):])


# ---- MiniLM ------------------------------------------------------------------------------------------


def minilm(args, work: Path, load: LoadSampler, png: Path) -> dict:
    runs, logs = [], {}
    for budget in args.budgets.split(","):
        seconds = parse_duration(budget)
        out = work / f"minilm-{budget}"
        command = [*EDGECLIP, "train", *MINILM_OPTIONS, "--time-budget", budget,
                   "--eval-every", f"{seconds / args.curve_points:g}s", "--no-progress", "--out", str(out)]
        command += args.minilm_extra.split()
        start = time.time()
        wall = run(command, args.threads, work / f"minilm-{budget}.log")
        run_dir = out.with_name(out.name + ".train")
        logs[f"{budget} budget"] = run_dir / "metrics.csv"
        rows = _read_rows(run_dir / "metrics.csv")
        summary = json.loads((run_dir / "summary.json").read_text())
        curve = [{"step": int(r["step"]), "minutes": r["elapsed_s"] / 60, "mean_cosine": r["eval_mean_cosine"],
                  "neighbour_recall_at_10": r["eval_neighbour_recall_at_10"], "eval_s": r["eval_s"]}
                 for r in evaluation_rows(run_dir / "metrics.csv")]
        runs.append({
            "budget": budget, "budget_s": seconds, "threads": args.threads,
            "steps_done": summary["steps_done"], "stopped_by": summary["stopped_by"],
            "train_seconds": summary["train_seconds"], "wall_seconds": wall,
            "samples_per_s_median": statistics.median(float(r["samples_per_s"]) for r in rows),
            "final": curve[-1], "curve": curve, "command": shown(command, args.threads),
            **load.between(start, time.time()),
        })
        runs[-1]["wordnet"] = _wordnet_fidelity(out, work, args.threads)
        print(f"minilm {budget}: cosine {curve[-1]['mean_cosine']:.4f}, recall@10 "
              f"{curve[-1]['neighbour_recall_at_10']:.4f} after {summary['steps_done']} steps", flush=True)
    plot_evaluation(logs, png)
    return {"targets": {"mean_cosine": 0.88, "neighbour_recall_at_10": 0.55, "budget": "10m"}, "runs": runs}


def _wordnet_fidelity(student: Path, work: Path, threads: int) -> dict:
    """The student's fidelity on 1,000 WordNet glosses, a text source training never sees."""
    out = work / f"wordnet-{student.name}.json"
    command = [*EDGECLIP, "eval", "--model", str(student), "--data", "wordnet", "--json", str(out)]
    run(command, threads, work / f"wordnet-{student.name}.log")
    metrics = json.loads(out.read_text())["metrics"]
    return {**metrics, "command": shown(command, threads)}


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ---- loss ablation -------------------------------------------------------------------------------------


def ablation(args, work: Path, load: LoadSampler) -> dict:
    """Teacher and PTQ rows, then one QAT student per loss set (same steps and seed), `jobs` at a time."""
    rows = [_evaluated("teacher (float)", "demo", work)]
    ptq = work / "ptq"
    run([*EDGECLIP, "ternarize", "--model", "demo", "--policy", "q-all", "--out", str(ptq)], 1, work / "ptq.log")
    rows.append(_evaluated("PTQ (q-all, no training)", str(ptq), work))
    pending = list(ABLATION.items())
    while pending:
        batch, pending = pending[: args.ablation_jobs], pending[args.ablation_jobs :]
        started = []
        for label, weights in batch:
            out = work / f"ablation-{label.strip('+').replace(' ', '-')}"
            command = [*EDGECLIP, "train", "--teacher", "demo", "--data", "fashion-mnist", "--policy", "q-all",
                       "--steps", str(args.ablation_steps), "--seed", "0", "--no-progress", "--out", str(out)]
            command += [item for name, w in weights.items() for item in (f"--{name}-weight", str(w))]
            log = open(work / f"{out.name}.log", "w")  # noqa: SIM115 - closed below, after the process ends
            process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log,
                                       stderr=subprocess.STDOUT)
            started.append((label, weights, out, command, process, log, time.time()))
        for label, weights, out, command, process, log, start in started:
            if process.wait():
                raise SystemExit(f"failed: {' '.join(command)}; see {log.name}")
            log.close()
            summary = json.loads((out.with_name(out.name + ".train") / "summary.json").read_text())
            row = _evaluated(label, str(out), work)
            row.update(weights=weights, train_command=shown(command, 1), train_seconds=summary["train_seconds"],
                       ternary_fraction_linear=summary["ternary_fraction_linear"],
                       **load.between(start, time.time()))
            rows.append(row)
            print(f"ablation {label}: top-1 {100 * row['top1']:.2f} %", flush=True)
    return {"steps": args.ablation_steps, "seed": 0, "jobs": args.ablation_jobs, "threads_per_run": 1,
            "rows": rows}


def _evaluated(label: str, model: str, work: Path) -> dict:
    out = work / f"eval-{Path(model).name}.json"
    command = [*EDGECLIP, "eval", "--model", model, "--data", "fashion-mnist", "--json", str(out)]
    run(command, 2, work / f"{out.stem}.log")
    metrics = json.loads(out.read_text())["metrics"]
    return {"label": label, "top1": metrics["top1"], "top5": metrics["top5"], "samples": metrics["samples"],
            "eval_command": shown(command, 2)}


# ---- output --------------------------------------------------------------------------------------------


def write_json(path: Path, document: dict) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    write_synced(temp, (json.dumps(document, indent=2) + "\n").encode())
    os.replace(temp, path)
    fsync_dir(path.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["minilm", "ablation"], default=None, help="run one part (default both)")
    parser.add_argument("--budgets", default="10m,30m", help="MiniLM wall-clock budgets, one run each")
    parser.add_argument("--threads", type=int, default=2, help="OpenMP threads of each MiniLM run")
    parser.add_argument("--curve-points", type=int, default=10, help="held-out evaluations per MiniLM run")
    parser.add_argument("--minilm-extra", default="", help="extra `edgeclip train` options for the MiniLM runs")
    parser.add_argument("--ablation-steps", type=int, default=300)
    parser.add_argument("--ablation-jobs", type=int, default=1, help="ablation runs trained side by side")
    parser.add_argument("--work", default=None, help="directory for checkpoints and logs (default: a temp dir)")
    parser.add_argument("--host", default=platform.node() or "host", help="name in the results file")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="edgeclip-training-"))
    work.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"training-{args.host}.json"
    load = LoadSampler()
    try:
        if args.only in (None, "ablation"):
            store(out, args.host, "ablation", ablation(args, work, load))
        if args.only in (None, "minilm"):
            store(out, args.host, "minilm", minilm(args, work, load, RESULTS / f"training-{args.host}-minilm.png"))
    finally:
        load.stop()
    print(f"wrote {out}")


def store(path: Path, host: str, part: str, value: dict) -> None:
    """Replace one part of the results file, re-read just before, so parts run side by side both land."""
    document = json.loads(path.read_text()) if path.is_file() else {}
    document.update(host=host, cpu=cpu_model(), cores=os.cpu_count())
    document[part] = value
    write_json(path, document)


if __name__ == "__main__":
    main()
