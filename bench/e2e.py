"""End-to-end encoder latency on this host: ternary TVM vs the runtimes a user would pick.

A ViT-B/32-shaped HF CLIP (random init: speed does not depend on weight values), ternarized
q-all and frozen. Image tower on one 224x224 image, text tower on one 77-token caption, at
1 thread and all threads. Peers: torch fp32 eager, torch dynamic-int8 linears, onnxruntime fp32,
onnxruntime int8 (quantize_dynamic), and TVM fp32 with the same (zero) tuning effort.

    .venv/bin/python bench/e2e.py [--towers image,text] [--threads 1,all] [--repeat 20] [--records] [--tune N]

--records adds "tvm ternary int8-act tuned": the same tower built with the tuning records in
schedules/x86-64/ (the plain ternary row is always built without records). --tune N first runs
`edgeclip tune --kernels` on the towers with N trials per task at each thread count (merging
into schedules/x86-64/), prints its per-task table, and implies --records.

Writes bench/results/e2e-<host>.json (e2e-tuned-<host>.json with --records/--tune; `--host`
defaults to the node name) and prints a Markdown table plus the per-op profile of the
single-thread ternary image tower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import tvm
from clip_shapes import random_clip
from tower_profile import profile_tower

from edgeclip.export.onnx_export import export_tower_onnx
from edgeclip.hostinfo import cpu_model
from edgeclip.lower.build import FROM_STORE, compile_tower
from edgeclip.lower.target import resolve_target
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


def bench_tower(name, float_model, ternary_model, threads_list, repeat, workdir, records=False) -> list[dict]:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp_tower = model_towers(float_model)[name]
    tern_tower = model_towers(ternary_model)[name]
    arrays = inputs_for(fp_tower)
    torch_args = [torch.from_numpy(a) for a in arrays]
    feeds = {spec.name: a for spec, a in zip(fp_tower.inputs, arrays, strict=True)}

    onnx_fp = export_tower_onnx(fp_tower, workdir / f"{name}-fp32.onnx")
    onnx_q = workdir / f"{name}-int8.onnx"
    quantize_dynamic(str(onnx_fp), str(onnx_q), weight_type=QuantType.QInt8)
    dyn_int8 = torch.ao.quantization.quantize_dynamic(fp_tower.module, {torch.nn.Linear}, dtype=torch.qint8)

    rows = []
    for threads in threads_list:
        set_threads(threads)

        def row(runtime, ms, threads=threads, **extra):
            rows.append({"tower": name, "threads": threads, "runtime": runtime, "ms": round(ms, 2), **extra})

        with torch.no_grad():
            row("torch fp32", median_ms(lambda: fp_tower.module(*torch_args), repeat))
            row("torch int8 dynamic", median_ms(lambda: dyn_int8(*torch_args), repeat))
        for label, path in (("onnxruntime fp32", onnx_fp), ("onnxruntime int8 dynamic", onnx_q)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            row(label, median_ms(lambda s=session: s.run(None, feeds), repeat), weights_mb=round(path.stat().st_size / 2**20, 1))
        target = resolve_target("x86-64", threads)
        builds = [("tvm ternary int8-act", tern_tower, "int8", None), ("tvm fp32 (no tuning)", fp_tower, "fp32", None)]
        if records:
            builds.insert(1, ("tvm ternary int8-act tuned", tern_tower, "int8", FROM_STORE))
        for label, tower, act, store in builds:
            compiled = compile_tower(tower, target, act, records=store)
            vm_main = compiled.vm()["main"]
            tvm_args = [tvm.runtime.tensor(a) for a in (*arrays, *compiled.weights)]
            extra = {"compile_s": round(compiled.compile_seconds, 1), "family": target.family}
            if act == "int8":
                got = vm_main(*tvm_args).numpy()
                with torch.no_grad():
                    ref = tern_tower.module(*torch_args).numpy()
                extra["cosine_vs_torch"] = round(float((got * ref).sum() / np.linalg.norm(got) / np.linalg.norm(ref)), 5)
                if threads == 1:
                    extra["profile"] = [{k: (round(v, 3) if k == "ms" else v) for k, v in r.items()}
                                        for r in profile_tower(compiled, arrays)[:15]]
            row(label, median_ms(lambda f=vm_main, a=tvm_args: f(*a), repeat), **extra)
    return rows


def markdown(rows) -> str:
    lines = ["| tower | threads | runtime | ms | x torch fp32 |", "|---|---|---|---|---|"]
    base = {(r["tower"], r["threads"]): r["ms"] for r in rows if r["runtime"] == "torch fp32"}
    for r in rows:
        lines.append(f"| {r['tower']} | {r['threads']} | {r['runtime']} | {r['ms']:.1f} | "
                     f"{base[(r['tower'], r['threads'])] / r['ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towers", default="image,text")
    parser.add_argument("--threads", default="1,all", help="comma list; 'all' = every core")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--records", action="store_true", help="add the ternary tower built with schedules/x86-64 records")
    parser.add_argument("--tune", type=int, default=0, metavar="N", help="tune first, N trials per task (implies --records)")
    parser.add_argument("--host", default=platform.node() or "host", help="name in the results file")
    args = parser.parse_args()
    size_for_host()  # before set_threads starts TVM's pool: it can use no more workers than it starts with
    threads = [os.cpu_count() if t == "all" else int(t) for t in args.threads.split(",")]
    float_model = random_clip("vit-b-32")
    ternary_model = random_clip("vit-b-32")
    quantize(ternary_model, TernaryConfig(policy="q-all"))
    freeze(ternary_model)
    rows, tuning = [], []
    for n in threads if args.tune else []:
        start = time.perf_counter()
        results = tune(ternary_model, "x86-64", towers=args.towers.split(","), kernels=True, trials=args.tune, threads=n)
        tuning.append({"threads": n, "trials_per_task": args.tune, "seconds": round(time.perf_counter() - start),
                       "tasks": [vars(r) for r in results]})
        print(summary_table(results))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.towers.split(","):
            rows += bench_tower(name, float_model, ternary_model, threads, args.repeat, Path(tmp),
                                records=args.records or args.tune > 0)
    host = args.host
    result = {"host": host, "cpu": cpu_model(), "cores": os.cpu_count(),
              "model": "ViT-B/32-shaped HF CLIP, random init, q-all ternary", "rows": rows}
    if tuning:
        result["tuning"] = tuning
    RESULTS.mkdir(exist_ok=True)
    tuned = args.records or args.tune > 0
    out = RESULTS / f"e2e-{'tuned-' if tuned else ''}{host}.json"  # a tuned run never overwrites the full table
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(rows))
    for r in rows:
        if "profile" in r:
            print(f"\nper-op profile, {r['tower']} tower, ternary, 1 thread (ms per run):")
            for p in r["profile"]:
                print(f"  {p['ms']:8.2f}  x{p['calls']:<3d} {p['op']}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
