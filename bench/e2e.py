"""End-to-end encoder latency on this host: ternary TVM vs the runtimes a user would pick.

ViT-B-shaped HF CLIPs (random init: speed does not depend on weight values), ternarized q-all and
frozen: image towers on 224x224 images (ViT-B/32: 50 tokens, ViT-B/16: 197), the text tower on
77-token captions (measured once: both shapes share it), at each batch size and thread count.
Peers (bench/peers.py), timed in the same process on the same input: torch fp32, torch int8
dynamic, onnxruntime fp32, int8 dynamic and int8 static QDQ (per-channel), OpenVINO at its default precision
(the row says which it chose) and at f32, OpenVINO int8 via NNCF; and, with --tvm-fp32, TVM fp32
with the same (zero) tuning effort. Efficiency: the tower's multiply-accumulates (torch's flop
counter: linears, convolutions, matmuls) over time x this CPU's int8 peak (bench/peak.py,
measured at the start of the run); the kernels' own share from the per-op profile.

    .venv/bin/python bench/e2e.py [--shapes vit-b-32,vit-b-16] [--towers image,text] [--batch 1,8]
                                  [--threads 1,all] [--repeat 20] [--records] [--tune N] [--tvm-fp32]

--records adds "tvm ternary int8-act tuned": the same tower built with the tuning records in
schedules/<host target>/ (the plain ternary row is always built without records). --tune N first runs
`edgeclip tune --kernels` on the towers with N trials per task at each thread count (merging
into schedules/<host target>/), prints its per-task table, and implies --records.

Writes bench/results/e2e-<host>.json (e2e-tuned-<host>.json with --records/--tune; `--host`
defaults to the node name) with a PNG plot beside it (latency vs tokens and vs batch) and prints a Markdown table plus the per-op profile of each
single-thread ternary tower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import host_facts
import numpy as np
import peak
import peers
import torch
import tvm
from clip_shapes import random_clip
from tower_profile import profile_tower

from edgeclip.export.onnx_export import export_tower_onnx
from edgeclip.hostinfo import cpu_model
from edgeclip.lower.build import FROM_STORE, compile_tower
from edgeclip.lower.target import host_target, resolve_target
from edgeclip.lower.thread_pool import size_for_host
from edgeclip.lower.tune import summary_table, tune
from edgeclip.models.families import model_towers
from edgeclip.quant import TernaryConfig, freeze, quantize

RESULTS = Path(__file__).parent / "results"


def inputs_for(tower) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = []
    for spec in tower.inputs:
        if spec.name == "input_ids":
            ids = np.zeros(spec.shape, np.int64)
            ids[:, :20] = rng.integers(1, 49000, size=(spec.shape[0], 20))
            ids[:, 0], ids[:, 19] = 49406, 49407
            arrays.append(ids)
        elif spec.name == "attention_mask":
            arrays.append((arrays[0] != 0).astype(np.int64))
        else:
            arrays.append(rng.standard_normal(spec.shape).astype(np.float32))
    return arrays


SLOW_CALL_S = 1.0  # a method this slow (the untuned TVM fp32 build) gets 1 warm-up + 2 timed calls


def median_ms(run, repeat: int) -> float:
    start = time.perf_counter()
    run()
    slow = time.perf_counter() - start > SLOW_CALL_S
    for _ in range(0 if slow else 2):
        run()
    times = []
    for _ in range(2 if slow else repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    tvm.get_global_func("runtime.config_threadpool")(0, n)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return round(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), 5)


def tower_macs(tower, args: list[torch.Tensor]) -> int:
    """Multiply-accumulates of one call: every linear, convolution and matmul (torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        tower.module(*args)
    return counter.get_total_flops() // 2


def kernel_efficiency(profile: list[dict], peak_mac_s: float) -> float:
    """The ternary kernels' own share of the peak: their MACs (from their M_K_N names) over their time."""
    rows = [r for r in profile if r["op"].startswith("ternary_linear_")]
    macs = sum(np.prod([int(d) for d in r["op"].split("_")[3:6]]) * r["calls"] for r in rows)
    return float(macs / (sum(r["ms"] for r in rows) / 1e3) / peak_mac_s)


def bench_tower(name, float_model, ternary_model, threads_list, repeat, workdir, peaks, batch=1, records=False,
                tvm_fp32=False) -> list[dict]:
    fp_tower = model_towers(float_model, batch)[name]
    tern_tower = model_towers(ternary_model, batch)[name]
    arrays = inputs_for(fp_tower)
    torch_args = [torch.from_numpy(a) for a in arrays]
    feeds = {spec.name: a for spec, a in zip(fp_tower.inputs, arrays, strict=True)}
    calib = peers.calibration_feeds(fp_tower, feeds)
    onnx_fp = export_tower_onnx(fp_tower, workdir / f"{name}-b{batch}-fp32.onnx")
    macs = tower_macs(fp_tower, torch_args)

    rows = []
    for threads in threads_list:
        set_threads(threads)
        peak_mac_s = peaks[threads]

        def row(runtime, ms, threads=threads, **extra):
            rows.append({"tower": name, "batch": batch, "threads": threads, "runtime": runtime, "ms": round(ms, 2),
                         "ms_per_item": round(ms / batch, 3), **extra})

        with torch.no_grad():
            reference = fp_tower.module(*torch_args).numpy()
        for peer in (peers.torch_peers(fp_tower, torch_args)
                     + peers.onnxruntime_peers(onnx_fp, feeds, calib, threads, workdir)
                     + peers.openvino_peers(onnx_fp, feeds, calib, threads)):
            row(peer.label, median_ms(peer.run, repeat), cosine_vs_torch_fp32=cosine(peer.run(), reference), **peer.extra)
        target = resolve_target(host_target(), threads)
        builds = [("tvm ternary int8-act", tern_tower, "int8", None)]
        if tvm_fp32:
            builds.append(("tvm fp32 (no tuning)", fp_tower, "fp32", None))
        if records:
            builds.insert(1, ("tvm ternary int8-act tuned", tern_tower, "int8", FROM_STORE))
        for label, tower, act, store in builds:
            compiled = compile_tower(tower, target, act, records=store)
            vm_main = compiled.vm()["main"]
            tvm_args = [tvm.runtime.tensor(a) for a in (*arrays, *compiled.weights)]
            extra = {"compile_s": round(compiled.compile_seconds, 1), "family": target.family, "precision": act}
            ms = median_ms(lambda f=vm_main, a=tvm_args: f(*a), repeat)
            if act == "int8":
                got = vm_main(*tvm_args).numpy()
                with torch.no_grad():
                    ref = tern_tower.module(*torch_args).numpy()
                extra["cosine_vs_torch"] = cosine(got, ref)
                extra["tower_efficiency"] = round(macs / (ms / 1e3) / peak_mac_s, 4)
                profile = [{k: (round(v, 3) if k == "ms" else v) for k, v in r.items()}
                           for r in profile_tower(compiled, arrays)]
                extra["kernel_efficiency"] = round(kernel_efficiency(profile, peak_mac_s), 4)
                if threads == 1:
                    extra["profile"] = profile[:15]
            row(label, ms, **extra)
    for r in rows:
        r["macs"] = macs
    return rows


def case(row: dict) -> tuple:
    """What a row measured, less the runtime: rows of one case are compared."""
    return row.get("shape", "vit-b-32"), row["tower"], row.get("batch", 1), row["threads"]


def strongest_peer(rows: list[dict], key: tuple) -> dict:
    """The fastest non-edgeclip runtime of one case."""
    return min((r for r in rows if case(r) == key and not r["runtime"].startswith("tvm")), key=lambda r: r["ms"])


def markdown(rows) -> str:
    lines = ["| shape | tower | batch | threads | runtime | precision | ms | x strongest peer |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        best = strongest_peer(rows, case(r))
        lines.append(f"| {' | '.join(map(str, case(r)[:3]))} | {r['threads']} | {r['runtime']} | {r.get('precision', '')} | "
                     f"{r['ms']:.1f} | {best['ms'] / r['ms']:.2f} |")
    return "\n".join(lines)


TOKENS = {("vit-b-32", "image"): 50, ("vit-b-16", "image"): 197, ("vit-b-32", "text"): 77, ("vit-b-16", "text"): 77}


def plot(rows: list[dict], out: Path) -> None:
    """Latency vs tokens (batch 1) and per-image latency vs batch, edgeclip beside the strongest peer,
    at the fewest threads measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = min(r["threads"] for r in rows)
    ternary = [r for r in rows if r["runtime"] == "tvm ternary int8-act" and r["threads"] == threads]
    fig, (by_tokens, by_batch) = plt.subplots(1, 2, figsize=(10, 4))
    for label, pick in (("edgeclip ternary", lambda r: r), ("strongest peer", lambda r: strongest_peer(rows, case(r)))):
        points = sorted((TOKENS[case(r)[:2]], pick(r)["ms"]) for r in ternary if case(r)[2] == 1)
        by_tokens.plot(*zip(*points, strict=True), marker="o", label=label)
        for shape in sorted({case(r)[0] for r in ternary}):
            series = sorted((case(r)[2], pick(r)["ms_per_item"]) for r in ternary if case(r)[:2] == (shape, "image"))
            by_batch.plot(*zip(*series, strict=True), marker="o", label=f"{label}, {shape}")
    by_tokens.set(xlabel="tokens", ylabel="ms (batch 1)", title=f"latency vs tokens, {threads} thread(s)")
    by_batch.set(xlabel="batch", ylabel="ms per image", title=f"image towers vs batch, {threads} thread(s)")
    for ax in (by_tokens, by_batch):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="vit-b-32", help="comma list of bench/clip_shapes.py shapes (vit-b-32, vit-b-16)")
    parser.add_argument("--towers", default="image,text")
    parser.add_argument("--batch", default="1", help="comma list of batch sizes (e.g. 1,8)")
    parser.add_argument("--threads", default="1,all", help="comma list; 'all' = every core")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--records", action="store_true", help="add the ternary tower built with the host target's records (schedules/<target>/)")
    parser.add_argument("--tune", type=int, default=0, metavar="N", help="tune first, N trials per task (implies --records)")
    parser.add_argument("--tvm-fp32", action="store_true", help="add TVM fp32 with no tuning (slow: seconds a call)")
    parser.add_argument("--host", default=platform.node() or "host", help="name in the results file")
    args = parser.parse_args()
    size_for_host()  # before set_threads starts TVM's pool: it can use no more workers than it starts with
    threads = [os.cpu_count() if t == "all" else int(t) for t in args.threads.split(",")]
    family = peak.family_of_this_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        probe = peak.compile_probe(family, Path(tmp))
        peaks = {n: peak.measure(probe, family, n, 3)["mac_per_s"] for n in threads}
    rows, tuning = [], []
    towers_done = set()  # every shape has ViT-B's text tower: it is measured once
    for shape in args.shapes.split(","):
        float_model = random_clip(shape)
        ternary_model = random_clip(shape)
        quantize(ternary_model, TernaryConfig(policy="q-all"))
        freeze(ternary_model)
        towers = [t for t in args.towers.split(",") if t == "image" or t not in towers_done]
        towers_done.update(towers)
        for n in threads if args.tune else []:
            start = time.perf_counter()
            results = tune(ternary_model, host_target(), towers=towers, kernels=True, trials=args.tune, threads=n)
            tuning.append({"shape": shape, "threads": n, "trials_per_task": args.tune,
                           "seconds": round(time.perf_counter() - start), "tasks": [vars(r) for r in results]})
            print(summary_table(results))
        with tempfile.TemporaryDirectory() as tmp:
            for name in towers:
                for batch in (int(b) for b in args.batch.split(",")):
                    measured = bench_tower(name, float_model, ternary_model, threads, args.repeat, Path(tmp), peaks,
                                           batch, records=args.records or args.tune > 0, tvm_fp32=args.tvm_fp32)
                    rows += [{"shape": shape, **r} for r in measured]
    host = args.host
    result = {"host": host, "cpu": cpu_model(), "cores": os.cpu_count(), "host_facts": host_facts.host(),
              "peak_mac_per_s": {str(n): v for n, v in peaks.items()}, "peak_instruction": peak.FAMILIES[family]["instruction"],
              "load_average": os.getloadavg(), "command": "python bench/e2e.py " + " ".join(sys.argv[1:]),
              "model": f"{', '.join(args.shapes.split(','))}-shaped HF CLIP, random init, q-all ternary", "rows": rows}
    if tuning:
        result["tuning"] = tuning
    RESULTS.mkdir(exist_ok=True)
    tuned = args.records or args.tune > 0
    out = RESULTS / f"e2e-{'tuned-' if tuned else ''}{host}.json"  # a tuned run never overwrites the full table
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(rows, out.with_suffix(".png"))
    print(markdown(rows))
    for r in rows:
        if "profile" in r:
            print(f"\nper-op profile, {r['shape']} {r['tower']} tower, batch {r['batch']}, ternary, 1 thread (ms per run):")
            for p in r["profile"]:
                print(f"  {p['ms']:8.2f}  x{p['calls']:<3d} {p['op']}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
