"""Evaluation: zero-shot classification, image-text retrieval, embedding fidelity to a teacher.

Results use clip_benchmark's shape, {"dataset", "model", "task", "metrics"}, so they can be put
beside published tables; the headline metrics are repeated at the top level for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from edgeclip.models.dual import DualEncoder
from edgeclip.training.data import LabeledImages


@torch.no_grad()
def image_embeddings(model: DualEncoder, images, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    chunks = [model.encode_image(model.preprocess(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def text_embeddings(model: DualEncoder, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    model.eval()
    chunks = []
    for i in range(0, len(texts), batch_size):
        tokens = model.tokenize(texts[i : i + batch_size])
        chunks.append(model.encode_text(tokens["input_ids"], tokens["attention_mask"]))
    return torch.cat(chunks)


def class_embeddings(model: DualEncoder, data: LabeledImages) -> torch.Tensor:
    """Prompt ensemble: mean of the unit embeddings of every template, re-normalised, per class."""
    prompts = [p for c in range(len(data.classes)) for p in data.prompts(c)]
    per_prompt = text_embeddings(model, prompts).reshape(len(data.classes), len(data.templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


def zero_shot_classification(model: DualEncoder, data: LabeledImages, limit: int | None = None) -> dict:
    images, labels = data.images[:limit], torch.from_numpy(data.labels[:limit])
    logits = image_embeddings(model, images) @ class_embeddings(model, data).t()
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = top5 == labels.unsqueeze(1)
    per_class = [float(hits[labels == c, 0].float().mean()) for c in labels.unique()]
    return {
        "top1": float(hits[:, 0].float().mean()),
        "top5": float(hits.any(dim=1).float().mean()),
        "mean_per_class_recall": float(np.mean(per_class)),
        "samples": len(labels),
    }


def retrieval(model: DualEncoder, pairs, limit: int = 1000, ks=(1, 5, 10)) -> dict:
    """Recall@k for text->image ('image_retrieval') and image->text ('text_retrieval'), one caption each."""
    images, captions = [], []
    for image, caption in pairs:
        images.append(image)
        captions.append(caption)
        if len(images) == limit:
            break
    similarity = image_embeddings(model, images) @ text_embeddings(model, captions).t()
    truth = torch.arange(len(images))
    metrics = {}
    for k in ks:
        k_eff = min(k, len(images))
        metrics[f"image_retrieval_recall@{k}"] = _recall(similarity.t(), truth, k_eff)
        metrics[f"text_retrieval_recall@{k}"] = _recall(similarity, truth, k_eff)
    metrics["samples"] = len(images)
    return metrics


def _recall(scores: torch.Tensor, truth: torch.Tensor, k: int) -> float:
    return float((scores.topk(k, dim=1).indices == truth.unsqueeze(1)).any(dim=1).float().mean())


@torch.no_grad()
def sentence_embeddings(encoder, tokenizer, sentences: list[str], batch_size: int = 128, max_length: int = 128):
    """Embeddings in input order; batches are cut from the sentences sorted by length so each pads little."""
    encoder.eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    chunks = []
    for i in range(0, len(order), batch_size):
        texts = [sentences[j] for j in order[i : i + batch_size]]
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        chunks.append(encoder(tokens["input_ids"], tokens["attention_mask"]))
    embeddings = torch.empty_like(torch.cat(chunks))
    embeddings[torch.tensor(order)] = torch.cat(chunks)
    return embeddings


def neighbour_recall(student: torch.Tensor, teacher: torch.Tensor, k: int = 10) -> float:
    """Share of each sentence's k nearest neighbours (by the teacher) the student also ranks top k."""
    def neighbours(embeddings):
        similarity = embeddings @ embeddings.t()
        similarity.fill_diagonal_(-float("inf"))
        return similarity.topk(k, dim=1).indices

    s, t = neighbours(student), neighbours(teacher)
    overlap = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(s, t, strict=True)]
    return float(np.mean(overlap)) / k


def embedding_fidelity(student, teacher, tokenizer, sentences: list[str]) -> dict:
    return embedding_fidelity_against(student, sentence_embeddings(teacher, tokenizer, sentences), tokenizer, sentences)


def embedding_fidelity_against(student, teacher_embeddings: torch.Tensor, tokenizer, sentences: list[str]) -> dict:
    """Fidelity to precomputed teacher embeddings (periodic evaluation computes those once).

    Leaves the student in the train/eval mode it came in, so evaluating mid-run changes nothing."""
    was_training = student.training
    s = sentence_embeddings(student, tokenizer, sentences)
    student.train(was_training)
    return {
        "mean_cosine": float(F.cosine_similarity(s, teacher_embeddings).mean()),
        "neighbour_recall_at_10": neighbour_recall(s, teacher_embeddings, 10),
        "samples": len(sentences),
    }


def result(dataset: str, model: str, task: str, metrics: dict) -> dict:
    return {"dataset": dataset, "model": model, "task": task, "metrics": metrics, **metrics}


def write_json(path, document: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path
