"""Demo step 3: teacher, PTQ and student side by side on the Fashion-MNIST test split.

Classification is `edgeclip eval`'s zero-shot top-1 / top-5. Retrieval on a labelled set means
class retrieval: each class's prompt ensemble ranks the test images, and precision@10 / mean
average precision say how many of the images it ranks first are of that class (image -> text
retrieval is the classification itself). Scores are cached by checkpoint bytes and sample count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeclip.demo import cache
from edgeclip.models.sources import open_model

RETRIEVAL_K = 10


def evaluate(checkpoint: Path, limit: int | None) -> tuple[dict, bool]:
    """(scores, was_cached) of one checkpoint."""
    entry_key = cache.key("training", "eval", cache.tree_digest(checkpoint), limit, cache.tree_digest(Path(__file__)))
    return cache.cached_json("eval", entry_key,
                             lambda: _scores(checkpoint, limit))


def _scores(checkpoint: Path, limit: int | None) -> dict:
    from edgeclip.models.dual import DualEncoder
    from edgeclip.training import evaluate as ev
    from edgeclip.training.data import load_fashion_mnist

    model, _ = open_model(str(checkpoint))
    dual = DualEncoder(model)
    data = load_fashion_mnist("test")
    scores = ev.zero_shot_classification(dual, data, limit)
    images = ev.image_embeddings(dual, data.images[:limit])
    retrieval = class_retrieval(images @ ev.class_embeddings(dual, data).t(), torch.from_numpy(data.labels[:limit]))
    return {**scores, **retrieval}


def class_retrieval(similarity: torch.Tensor, labels: torch.Tensor, k: int = RETRIEVAL_K) -> dict:
    """Text -> image retrieval by class: `similarity` is [images, classes]."""
    precision, average_precision = [], []
    for c in range(similarity.shape[1]):
        relevant = (labels[similarity[:, c].argsort(descending=True)] == c).float()
        if relevant.sum() == 0:
            continue
        precision.append(float(relevant[:k].mean()))
        hits = relevant.cumsum(0)
        ranks = torch.arange(1, len(relevant) + 1, dtype=torch.float32)
        average_precision.append(float((hits / ranks * relevant).sum() / relevant.sum()))
    return {f"t2i_precision@{k}": float(np.mean(precision)), "t2i_map": float(np.mean(average_precision))}
