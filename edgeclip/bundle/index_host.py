"""Search indexes on the host, with numpy: an index file from embeddings computed here (quantized
by the runner's own rule, so its bytes equal the runner's for the same rows), and the exact fp32
search and recall@k that the runner's quantized search is measured against (tests, bench/search.py).
"""

from __future__ import annotations

import numpy as np

from edgeclip.formats import index as index_format


def corpus_mean(rows: np.ndarray) -> np.ndarray:
    """The runner's mean: float64 sums row by row in order (cumsum, not numpy's pairwise sum), then float32."""
    rows = np.asarray(rows, dtype=np.float32)
    return (np.cumsum(rows.astype(np.float64), axis=0)[-1] / len(rows)).astype(np.float32)


def quantize(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scales f32[N], codes i8[N, stride], sign bits u8[N, bit stride]) as the runner's QuantizeRow:
    scale = max|x| / 127 and codes round(x / scale), ties to even, all in float32."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    count, dim = rows.shape
    scales = (np.abs(rows).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))[:, None]
    codes = np.zeros((count, index_format.code_stride(dim)), np.int8)
    codes[:, :dim] = np.where(scales[:, None] > 0, np.clip(np.rint(rows / safe), -127, 127), 0).astype(np.int8)
    bits = np.zeros((count, index_format.bit_stride(dim)), np.uint8)
    packed = np.packbits(codes[:, :dim] > 0, axis=1, bitorder="little")
    bits[:, :packed.shape[1]] = packed
    return scales, codes, bits


def build_index(rows: np.ndarray, items: list[str], model: dict, kind: str = "text", encoding: str = "binary",
                lines: list[int] | None = None) -> bytes:
    """An index file's bytes for unit `rows` [N, D] and their items (line i + 1 unless given): each
    row's residual from the corpus mean quantized."""
    rows = np.asarray(rows, dtype=np.float32)
    mean = corpus_mean(rows)
    scales, codes, bits = quantize(rows - mean)
    lines = list(range(1, len(items) + 1)) if lines is None and kind == "text" else lines or [0] * len(items)
    return index_format.encode(encoding, kind, model, mean.tobytes(), scales.tobytes(), codes.tobytes(), bits.tobytes(), lines,
                               items, rows.shape[1])


def exact_top_k(corpus: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ids of each query's k nearest corpus rows by fp32 cosine (unit rows), best first."""
    scores = np.asarray(queries, np.float32) @ np.asarray(corpus, np.float32).T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: list[list[int]], exact: np.ndarray) -> float:
    """|found ∩ exact| / k, averaged over the queries."""
    k = exact.shape[1]
    return float(np.mean([len(set(f[:k]) & set(e.tolist())) / k for f, e in zip(found, exact, strict=True)]))
