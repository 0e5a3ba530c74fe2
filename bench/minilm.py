"""The seed paper's MiniLM table (arXiv 2411.15438: storage and latency of a ternary embedding
model) measured on this host, not a test.

usage: python bench/minilm.py [--seq-len 128] [--repeat 20] [--threads 1,2] [--rebuild]

all-MiniLM-L6-v2 is ternarized (q-all; no training: size and speed do not depend on it) and
bundled for this host's best x86 target, its text tower compiled for batch 1 and 32 (cached in
bench/.cache/ per committed source tree). In one process, on the same token inputs (held-out
fortunes, padded to --seq-len), alternating per batch size and thread count:

- edgeclip ternary: the bundle's own native runner, `edgeclip-runner bench --tower text --batch N
  --threads T` (p50 of its in-process timing; no fp32 baseline module: TVM's untuned fp32 build is
  no fair fp32 figure, torch and onnxruntime are);
- torch fp32 and torch int8 dynamic (the float model), onnxruntime fp32, int8 dynamic (what BERT
  models usually ship as) and int8 static QDQ (per-channel, calibrated on other fortunes): median
  wall time of a call in this process.

Storage: the float model's fp32 weights against the bundle's ternary payload (modules, params and
1.6-bit weights) and the onnxruntime int8 dynamic model file. Writes bench/results/minilm-<cpu>.json;
bench/tables.py renders its README table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import peers
import torch
from e2e import cosine, median_ms
from host_facts import host, save, source_key

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.export.onnx_export import export_tower_onnx
from edgeclip.formats.bundle import payload_bytes
from edgeclip.hostinfo import cpu_model
from edgeclip.lower.target import host_target
from edgeclip.models.families import model_towers
from edgeclip.models.sources import open_model
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig
from edgeclip.training.corpus import load_fortunes

CACHE = Path(__file__).resolve().parent / ".cache"
BATCHES = (1, 32)


def cached_bundle(seq_len: int, target: str, rebuild: bool) -> tuple[Path, int]:
    """(the q-all MiniLM bundle, the float model's fp32 weight bytes)."""
    from edgeclip.pipeline import inspect_checkpoint

    folder = CACHE / f"minilm-{target}-s{seq_len}-{source_key()}"
    checkpoint = folder / "minilm-q-all"
    if not checkpoint.is_dir() or rebuild:
        ternarize_source("minilm", TernaryConfig(policy="q-all"), checkpoint)
    found = sorted(folder.glob("*.edgeclip"))
    bundle = found[0] if found and not rebuild else build_bundle(checkpoint, target, folder, batches=BATCHES,
                                                                 seq_len=seq_len)
    return bundle, inspect_checkpoint(checkpoint)["fp32_size_bytes"]


def token_inputs(tower, batch: int, offset: int = 0) -> dict[str, np.ndarray]:
    """Real sentences (held-out fortunes) as the tower's padded ids and mask, `batch` rows."""
    from edgeclip.models.wordpiece import minilm_tokenizer

    tokens = minilm_tokenizer()(load_fortunes().held_out[offset:offset + batch], padding="max_length", truncation=True,
                                max_length=tower.inputs[0].shape[1], return_tensors="np")
    return {name: tokens[name].astype(np.int64) for name in ("input_ids", "attention_mask")}


def runner_ms(folder: Path, batch: int, threads: int, runs: int) -> tuple[float, float]:
    """(p50 ms a call, cosine to the reference) from the bundle runner's own bench of the text tower."""
    done = subprocess.run([str(folder / "bin" / "edgeclip-runner"), "bench", "--bundle", str(folder), "--variant",
                           "ternary", "--tower", "text", "--batch", str(batch), "--threads", str(threads), "--runs",
                           str(runs), "--warmup", "3"], capture_output=True, text=True, timeout=1800, check=True)
    report = json.loads(done.stdout)
    return report["latency_ms"]["p50"], report["cosine_to_reference"]


def measure(bundle: Path, seq_len: int, threads_list: list[int], repeat: int, work: Path) -> list[dict]:
    float_model, _ = open_model("minilm")
    rows = []
    with local.extracted(bundle) as (folder, manifest):
        for batch in BATCHES:
            tower = model_towers(float_model, batch, seq_len)["text"]
            feeds = token_inputs(tower, batch)
            args = [torch.from_numpy(feeds[spec.name]) for spec in tower.inputs]
            calib = [token_inputs(tower, batch, offset=100 + 40 * i) for i in range(peers.CALIB)]
            onnx_fp = export_tower_onnx(tower, work / f"minilm-b{batch}-fp32.onnx")
            with torch.no_grad():
                reference = tower.module(*args).numpy()
            for threads in threads_list:
                # torch's pool only: TVM's is not used in this process (the runner is its own), and sizing
                # it to 1 worker would pin this thread to one CPU for every peer after it (docs/lowering.md).
                torch.set_num_threads(threads)

                def row(runtime, ms, batch=batch, threads=threads, **extra):
                    rows.append({"batch": batch, "threads": threads, "runtime": runtime, "ms": round(ms, 2),
                                 "ms_per_sentence": round(ms / batch, 3), **extra})

                for peer in peers.torch_peers(tower, args) + peers.onnxruntime_peers(onnx_fp, feeds, calib, threads,
                                                                                     work):
                    row(peer.label, median_ms(peer.run, repeat), cosine_vs_torch_fp32=cosine(peer.run(), reference),
                        **peer.extra)
                ms, agreement = runner_ms(folder, batch, threads, repeat)
                row("edgeclip ternary (runner)", ms, cosine_to_bundle_reference=agreement)
                print(f"batch {batch}, {threads} thread(s): " + ", ".join(
                    f"{r['runtime']} {r['ms']:.1f}" for r in rows if (r["batch"], r["threads"]) == (batch, threads)),
                    file=sys.stderr, flush=True)
        sizes = {"ternary_payload_bytes": payload_bytes(manifest, "ternary")}
    return rows, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=128, help="tokens a sentence (default 128, padded)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    target = host_target()
    before = host()
    bundle, fp32_weights = cached_bundle(args.seq_len, target, args.rebuild)
    with tempfile.TemporaryDirectory(prefix="bench-minilm-") as tmp:
        rows, sizes = measure(bundle, args.seq_len, [int(t) for t in args.threads.split(",")], args.repeat, Path(tmp))
        qdq = next((r["weights_mb"] for r in rows if r["runtime"] == "onnxruntime int8 dynamic"), None)
    storage = {"fp32_weights_bytes": fp32_weights, **sizes, "onnxruntime_int8_mb": qdq,
               "ternary_vs_fp32_weights": round(sizes["ternary_payload_bytes"] / fp32_weights, 4)}
    save({"model": "all-MiniLM-L6-v2 q-all", "target": target, "seq_len": args.seq_len, "repeat": args.repeat,
          "cpu": cpu_model(), "host_before": before, "host_after": host(), "storage": storage, "rows": rows,
          "command": " ".join(["python", "bench/minilm.py", *sys.argv[1:]])},
         f"minilm-{before['cpu'].lower().replace(' ', '-')}.json")


if __name__ == "__main__":
    main()
