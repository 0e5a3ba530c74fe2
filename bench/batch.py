"""Image tower throughput at batch 1 against batch 8, and the runner's load time (not a test).

usage: python bench/batch.py [--shape vit-b-32|tiny] [--target x86-64] [--rounds 3] [--runs 10]
                             [--bundle FILE.edgeclip] [--before DIR]

Builds an image-only ternary bundle of a randomly initialised CLIP of the given shape compiled for
batch 1 and 8 (or takes --bundle), then runs `edgeclip-runner bench --tower image` at batch 1 and
at batch 8 in alternation, `--rounds` times each, so both see the same machine load; reports the
median per-call latency, the per-image time (per call / batch), their ratio, and load_ms (the
process's tower load: module, VM, weights). `--before DIR` (bin/edgeclip-runner and
lib/libedgeclip.so of an older edgeclip, one that predates batch lines and reads the plan without
them) also times the batch 1 load by that runtime beside this one, round by round.
Host targets only. Writes bench/results/batch-<shape>-<target>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from clip_shapes import SHAPES, random_clip_dir

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.fsutil import write_synced
from edgeclip.hostinfo import cpu_model
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig

BATCHES = (1, 8)


def bench(runner: Path, folder: Path, batch: int, runs: int) -> dict:
    cmd = [str(runner), "bench", "--bundle", str(folder), "--tower", "image", "--runs", str(runs), "--warmup", "2"]
    done = subprocess.run(cmd + (["--batch", str(batch)] if batch > 1 else []), capture_output=True, text=True,
                          check=True, timeout=900)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="vit-b-32")
    parser.add_argument("--target", default="x86-64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--bundle", type=Path, help="an existing bundle built with --batch 1,8 (skips the build)")
    parser.add_argument("--before", type=Path, help="bin/ and lib/ of an older edgeclip runtime to time the load against")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        build_s = None
        bundle = args.bundle
        if bundle is None:
            teacher = random_clip_dir(Path(tmp) / "teacher", args.shape)
            _, checkpoint = ternarize_source(str(teacher), TernaryConfig(policy="q-all"), Path(tmp) / f"clip-{args.shape}")
            start = time.perf_counter()
            bundle = build_bundle(checkpoint, args.target, Path(tmp) / "out", towers=("image",), batches=BATCHES)
            build_s = round(time.perf_counter() - start, 1)
        with local.extracted(bundle) as (folder, _):
            runner = folder / "bin" / "edgeclip-runner"
            calls: dict[int, list[float]] = {b: [] for b in BATCHES}
            loads: dict[int, list[float]] = {b: [] for b in BATCHES}
            cosines: dict[int, float] = {}
            for _ in range(args.rounds):
                for batch in BATCHES:  # side by side: each round runs every size
                    report = bench(runner, folder, batch, args.runs)
                    calls[batch].append(report["latency_ms"]["p50"])
                    loads[batch].append(report["load_ms"])
                    cosines[batch] = min(cosines.get(batch, 1.0), report["cosine_to_reference"])
            if args.before:
                old = Path(tmp) / "before"  # the same bundle with the older runtime, its plan as that reads it
                shutil.copytree(folder, old, symlinks=True)
                for member in ("bin/edgeclip-runner", "lib/libedgeclip.so"):
                    shutil.copy(args.before / member, old / member)
                plan = old / "runner.plan"
                plan.write_text("".join(line for line in plan.read_text().splitlines(keepends=True)
                                        if not line.startswith("batch ")))
                before, after = [], []
                for _ in range(args.rounds):
                    before.append(bench(old / "bin" / "edgeclip-runner", old, 1, 1)["load_ms"])
                    after.append(bench(runner, folder, 1, 1)["load_ms"])
    result = {
        "shape": args.shape, "target": args.target, "cpu": cpu_model(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "rounds": args.rounds, "runs_per_round": args.runs,
        "build_seconds": build_s, "load_average_1m": round(os.getloadavg()[0], 2),
        "batches": {},
    }
    for batch in BATCHES:
        per_call = statistics.median(calls[batch])
        result["batches"][str(batch)] = {
            "per_call_ms_p50": round(per_call, 3), "per_image_ms": round(per_call / batch, 3),
            "images_per_s": round(1000 * batch / per_call, 1), "load_ms": round(statistics.median(loads[batch]), 1),
            "min_cosine_to_reference": cosines[batch],
        }
    one, eight = (result["batches"][str(b)]["per_image_ms"] for b in BATCHES)
    result["per_image_speedup_batch8_over_batch1"] = round(one / eight, 2)
    if args.before:
        result["load_ms_batch1"] = {"before": round(statistics.median(before), 1),
                                    "after": round(statistics.median(after), 1)}
    out = Path(__file__).with_name("results") / f"batch-{args.shape}-{args.target}.json"
    partial = out.with_suffix(".json.part")
    write_synced(partial, (json.dumps(result, indent=1) + "\n").encode())
    os.replace(partial, out)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
