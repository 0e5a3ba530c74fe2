"""Markdown tables from `edgeclip eval` results: teacher vs PTQ vs QAT+KD, and loss ablations."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = {
    "zeroshot_classification": (("top1", "top-1 %"), ("top5", "top-5 %")),
    "embedding_fidelity": (("mean_cosine", "mean cosine"), ("neighbour_recall_at_10", "neighbour recall@10")),
    "zeroshot_retrieval": (("image_retrieval_recall@1", "T→I R@1 %"), ("text_retrieval_recall@1", "I→T R@1 %")),
}
PERCENT = {"top1", "top5", "image_retrieval_recall@1", "text_retrieval_recall@1"}


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """One row per (label, result JSON); columns follow the task of the first result."""
    if not rows:
        return ""
    task = rows[0][1]["task"]
    columns = COLUMNS[task]
    lines = ["| model | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, result in rows:
        cells = [_cell(key, result["metrics"].get(key)) for key, _ in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" if key in PERCENT else f"{value:.4f}"


def table_from_files(labelled: list[tuple[str, Path]]) -> str:
    return markdown_table([(label, json.loads(Path(path).read_text())) for label, path in labelled])
