"""The checkpoint directory's `config.json`: what it must hold before a byte of weights is read.

The document vouches for the weights file (name, size, sha256) and every tensor's dtype and shape,
and carries the model's own config under "model" (family, architecture, quantization). See
docs/checkpoint-format.md. Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeclip.errors import CheckpointError

FORMAT = "edgeclip-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def read_config(path: Path) -> dict:
    """The parsed document of `path`, checked against the schema; CheckpointError says what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this directory is not an edgeclip checkpoint, re-export it")
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({one_line(err)}); re-export the checkpoint") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(
            f"{path}: wrong format {found!r}, expected {FORMAT!r}; this is not an edgeclip checkpoint"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported format_version {version!r} (this edgeclip reads {FORMAT_VERSION}); "
            "use the edgeclip version that wrote it or re-export"
        )
    problem = _schema_problem(document)
    if problem:
        raise CheckpointError(f"{path}: malformed config, {problem}; re-export the checkpoint")
    return document


def _schema_problem(document: dict) -> str | None:
    weights = document.get("weights")
    if not isinstance(weights, dict):
        return "'weights' is not an object"
    if not isinstance(weights.get("file"), str) or weights["file"] in ("", ".", "..") or "/" in weights["file"]:
        return f"'weights.file' {weights.get('file')!r} is not a plain file name"
    if not isinstance(weights.get("sha256"), str) or not isinstance(weights.get("bytes"), int):
        return "'weights' lacks a sha256 string or a bytes count"
    if not isinstance(document.get("tensors"), dict):
        return "'tensors' is not an object"
    if not isinstance(document.get("model"), dict):
        return "'model' is missing or not an object"
    return None


def one_line(err: Exception) -> str:
    """An exception's message on one line, for error messages that must stay one line."""
    return " ".join(str(err).split())
