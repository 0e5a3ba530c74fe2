"""On-device search at 100,000 x 384, timed inside the runner (not a test).

usage: python bench/search.py [--count 100000] [--real 8192] [--queries 1000]

Vectors: all-MiniLM-L6-v2 (fp32 PyTorch, 384 dims) embeddings of real sentences from the fortunes
corpus, a documented mix, since embedding 100,000 sentences on this machine's 2 shared cores takes
far too long: `--real` training sentences (the shortest first, fixed order) are embedded, the rest
of the corpus are unit-length mixes a * u + b * v + noise of two random real embeddings (a, b and
the noise seeded), so the corpus keeps the real embeddings' anisotropy and neighbourhoods. The
queries are the corpus's `--queries` held-out sentences, embedded the same way (never in the
corpus). Embeddings are cached in bench/.cache/.

Ground truth: exact fp32 cosine top-10 (numpy). The index is written by edgeclip.bundle.index_host
(the runner's own quantization rule, equal byte for byte, tests/test_search.py) and searched by
`edgeclip-runner search --vector Q.npy` (the runner outside a bundle: bin/ + lib/), one process,
one thread (taskset to one CPU); each query's "ms" is the runner's own clock around the search
call: quantizing the query, the scan, the heap, not the process start or the JSON. Encodings:
int8 (every row scored), binary with `--rerank` R rows re-scored in int8. Per configuration: p50 /
p90 ms over the queries, recall@10, bytes scanned per query (what a Pi reads from RAM: int8 codes
and scales of every row, or sign bits of every row plus R int8 rows), vector storage against fp32.
Writes bench/results/search-<cpu>.json; bench/tables.py renders its README table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from host_facts import host, save

from edgeclip.bundle.index_host import build_index, exact_top_k, recall_at_k
from edgeclip.formats import index as index_format
from edgeclip.native import toolchain

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(__file__).with_name(".cache")
DIM = 384
K = 10
RERANKS = (100, 400, 1000, 2000)
MODEL = {"bundle": "bench", "tower": "text", "variant": "fp32", "module_sha256": "0" * 64}


def embeddings(sentences: list[str], name: str) -> np.ndarray:
    """MiniLM fp32 embeddings of `sentences` (cached), in batches of similar length."""
    path = CACHE / f"minilm-{name}-{len(sentences)}.npy"
    if path.is_file():
        return np.load(path)
    import torch

    from edgeclip.models.minilm import SentenceEncoder, load_minilm

    model, tokenizer = load_minilm()
    encoder = SentenceEncoder(model).eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = np.zeros((len(sentences), DIM), np.float32)
    with torch.no_grad():
        for start in range(0, len(order), 64):
            rows = order[start:start + 64]
            out[rows] = encoder.encode([sentences[i] for i in rows], tokenizer, max_length=64).numpy()
    CACHE.mkdir(exist_ok=True)
    np.save(path, out)
    return out


def corpus(real: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`real` followed by unit mixes of two random real rows plus a little noise, `count` rows in all."""
    rng = np.random.default_rng(seed)
    extra = count - len(real)
    u, v = real[rng.integers(0, len(real), extra)], real[rng.integers(0, len(real), extra)]
    a = rng.uniform(0.5, 1.0, (extra, 1)).astype(np.float32)
    mixed = a * u + (1 - a) * v + rng.normal(0, 0.02, (extra, DIM)).astype(np.float32)
    rows = np.concatenate([real, mixed]).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def run_search(runner: Path, index: Path, queries: Path, rerank: int | None) -> tuple[list[list[int]], list[float]]:
    command = ["taskset", "-c", "0", str(runner), "search", "--index", str(index), "--vector", str(queries),
               "--k", str(K), "--threads", "1", *(["--rerank", str(rerank)] if rerank else [])]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return [[hit["id"] for hit in row["results"]] for row in rows], [row["ms"] for row in rows]


def scanned(encoding: str, count: int, rerank: int | None) -> int:
    """Index bytes one query reads: every row's codes + scale, or every row's bits + R rows."""
    row = index_format.code_stride(DIM) + 4
    return count * row if encoding == "int8" else count * index_format.bit_stride(DIM) + rerank * row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=8192)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    from edgeclip.training.corpus import load_fortunes

    fortunes = load_fortunes()
    start = time.perf_counter()
    real = embeddings(sorted(fortunes.train, key=len)[:args.real], "train")
    queries = embeddings(fortunes.held_out[:args.queries], "held-out")
    print(f"embeddings: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rows = corpus(real, args.count)
    exact = exact_top_k(rows, queries, K)
    result = {"count": args.count, "dim": DIM, "k": K, "real_rows": len(real), "queries": len(queries),
              "vectors": "all-MiniLM-L6-v2 fp32 embeddings of fortunes sentences + seeded mixes (see docstring)",
              "host_before": host(), "configs": []}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        tmp = Path(tmp)
        runner = toolchain.standalone_runner(tmp / "runner", "g++", "g++", "manylinux_2_28_x86_64")
        np.save(tmp / "queries.npy", queries.astype(np.float32))
        items = [f"item {i}" for i in range(args.count)]
        for encoding, reranks in (("int8", (None,)), ("binary", RERANKS)):
            data = build_index(rows, items, MODEL, encoding=encoding)
            info = index_format.parse(data)
            (tmp / f"{encoding}.index").write_bytes(data)
            for rerank in reranks:
                found, ms = run_search(runner, tmp / f"{encoding}.index", tmp / "queries.npy", rerank)
                config = {"encoding": encoding, "rerank": rerank, "recall_at_10": round(recall_at_k(found, exact), 4),
                          "p50_ms": round(statistics.median(ms), 3),
                          "p90_ms": round(float(np.percentile(ms, 90)), 3),
                          "bytes_scanned": scanned(encoding, args.count, rerank),
                          "vector_storage_vs_fp32": round(info.vector_bytes() / (args.count * DIM * 4), 4),
                          "file_bytes": len(data),
                          "command": f"taskset -c 0 edgeclip-runner search --index {encoding}.index --vector "
                                     f"queries.npy --k {K} --threads 1" + (f" --rerank {rerank}" if rerank else "")}
                result["configs"].append(config)
                print(json.dumps(config), file=sys.stderr, flush=True)
    result["host_after"] = host()
    save(result, f"search-{_slug(result['host_before']['cpu'])}.json")


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())[:40]


if __name__ == "__main__":
    main()
