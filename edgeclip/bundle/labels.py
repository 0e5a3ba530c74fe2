"""Labels baked into a bundle at build time (`edgeclip build --labels`): the label list parsed and
checked, each label's prompt embedded by the checkpoint's PyTorch text tower on the host, and the
two members and manifest entry a device classifies with, with no text tower of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeclip.errors import BundleError
from edgeclip.formats.manifest import MAX_LABELS, MAX_PROMPT_CHARS

NAMES = "labels/names.txt"
EMBEDDINGS = "labels/embeddings.npy"
MAX_LABEL_BYTES = 256
DEFAULT_PROMPT = "{}"
_BATCH = 64  # labels per text-tower call: enough to amortise torch's overhead, small for memory


def parse_labels(spec: str) -> list[str]:
    """`--labels`: an existing file holds one label per line (blank lines skipped), anything else
    is a comma-separated list. Each label is stripped and checked."""
    if _is_file(spec):
        try:
            text = Path(spec).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BundleError(f"cannot read the labels file {spec} ({err}); pass a UTF-8 file, one label a line") from err
        labels, where = [line.strip() for line in text.splitlines()], f"the labels file {spec}"
    else:
        labels, where = [label.strip() for label in spec.split(",")], f"--labels {_short(spec)}"
    labels = [label for label in labels if label]
    check_labels(labels, where)
    return labels


def _is_file(spec: str) -> bool:
    try:
        return Path(spec).is_file()
    except (OSError, ValueError):  # a list longer than a file name can be, or one holding a NUL
        return False


def check_labels(labels: list[str], where: str) -> None:
    if not labels:
        raise BundleError(f"{where} names no label; pass e.g. --labels \"a cat,a dog\" or a file with one label a line")
    if len(labels) > MAX_LABELS:
        raise BundleError(f"{where} names {len(labels)} labels, over the limit of {MAX_LABELS}; bake fewer")
    seen = set()
    for label in labels:
        size = len(label.encode("utf-8"))
        if size > MAX_LABEL_BYTES:
            raise BundleError(f"{where}: the label {_short(label)} is {size} bytes in UTF-8, over the limit of "
                              f"{MAX_LABEL_BYTES}; shorten it")
        if "\n" in label or "\r" in label:
            raise BundleError(f"{where}: the label {_short(label)} holds a line break; one label is one line")
        if label in seen:
            raise BundleError(f"{where} names {_short(label)} twice; each label once")
        seen.add(label)


def check_prompt(prompt: str) -> None:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BundleError(f"--prompt is {len(prompt)} characters, over the limit of {MAX_PROMPT_CHARS}; shorten it")
    if prompt.count("{}") != 1:
        raise BundleError(f"--prompt {_short(prompt)} must hold exactly one {{}} where the label goes, "
                          "e.g. \"a photo of a {}\"")


def prompted(prompt: str, label: str) -> str:
    """The text embedded for `label` (not str.format: prompts and labels may hold other braces)."""
    return prompt.replace("{}", label)


def label_embeddings(tower, tokenize, labels: list[str], prompt: str) -> np.ndarray:
    """float32 [N, D]: each prompted label through the family's tokenizer and the PyTorch text
    tower, L2-normalised row by row."""
    import torch

    rows = []
    for start in range(0, len(labels), _BATCH):
        inputs = [tokenize(prompted(prompt, label)) for label in labels[start:start + _BATCH]]
        batch = [torch.from_numpy(np.concatenate(column)) for column in zip(*inputs, strict=True)]
        with torch.no_grad():
            rows.append(tower.module(*batch).reshape(len(inputs), -1).double().numpy())
    embeddings = np.concatenate(rows)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.isfinite(embeddings).all() or (norms == 0).any():
        raise BundleError("the text tower gives NaN, infinite or zero embeddings for some labels; check the "
                          "model's weights (edgeclip inspect) and retrain")
    return (embeddings / norms).astype(np.float32)


def labels_plan_line(entry: dict) -> str:
    """The plan's `labels` line, from the manifest's entry."""
    return f"labels {entry['names']} {entry['embeddings']}"


def _short(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
