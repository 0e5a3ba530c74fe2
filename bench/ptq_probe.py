"""Which ternarization defaults keep MiniLM closest to itself without any training?

Plain post-training ternarization (q-all) of all-MiniLM-L6-v2 for each scale granularity and
beta; fidelity is the mean cosine between student and teacher sentence embeddings on held-out
sentences, plus neighbour recall@10 (how many of each sentence's 10 nearest teacher neighbours the
student finds). This is the measurement behind `DEFAULT_BETA` and `DEFAULT_GRANULARITY`.

    .venv/bin/python bench/ptq_probe.py [--sentences 500]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from edgeclip.hostinfo import cpu_model
from edgeclip.models.minilm import SentenceEncoder, load_minilm
from edgeclip.quant import TernaryConfig, freeze, model_stats, quantize
from edgeclip.training.corpus import load_fortunes

BETAS = (0.75, 1.0, 1.25, 1.5, 2.0)
GRANULARITIES = ("tensor", "channel")
RESULTS = Path(__file__).parent / "results" / "ptq-minilm.json"


def neighbour_recall(student: torch.Tensor, teacher: torch.Tensor, k: int = 10) -> float:
    def top(embeddings):
        sims = embeddings @ embeddings.T
        sims.fill_diagonal_(-2)
        return sims.topk(k, dim=1).indices

    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top(student), top(teacher), strict=True)]
    return sum(hits) / (k * len(hits))


@torch.no_grad()
def embed(model, tokenizer, sentences, batch=64):
    return torch.cat([model.encode(sentences[i : i + batch], tokenizer, max_length=64) for i in range(0, len(sentences), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=500, help="held-out sentences to embed")
    args = parser.parse_args()
    torch.set_num_threads(2)
    bert, tokenizer = load_minilm()
    teacher = SentenceEncoder(bert).eval()
    sentences = load_fortunes().held_out[: args.sentences]
    reference = embed(teacher, tokenizer, sentences)
    rows = []
    for granularity in GRANULARITIES:
        for beta in BETAS:
            student = copy.deepcopy(teacher)
            quantize(student, TernaryConfig(policy="q-all", granularity=granularity, beta=beta))
            freeze(student)
            got = embed(student, tokenizer, sentences)
            row = {
                "granularity": granularity,
                "beta": beta,
                "mean_cosine": float((got * reference).sum(dim=1).mean()),
                "neighbour_recall_at_10": neighbour_recall(got, reference),
                "sparsity": model_stats(student)["sparsity"],
            }
            rows.append(row)
            print(json.dumps(row))
    best = max(rows, key=lambda r: r["mean_cosine"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"cpu": cpu_model(), "sentences": len(sentences),
                                   "rows": rows, "best": best}, indent=2) + "\n")
    print("\n| granularity | beta | mean cosine | recall@10 | zeros |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['granularity']} | {r['beta']} | {r['mean_cosine']:.3f} | {r['neighbour_recall_at_10']:.3f} | {100 * r['sparsity']:.0f} % |")
    print(f"\nbest: {best['granularity']} beta={best['beta']}  -> {RESULTS}")


if __name__ == "__main__":
    main()
