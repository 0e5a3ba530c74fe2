"""The checkpoint directory's `config.json`: what it must hold before a byte of weights is read.

The document vouches for the weights file (name, size, sha256) and every tensor's dtype and shape,
and carries the model's own config under "model" (family, architecture, quantization). Because a
model is built from its architecture before the weights are loaded into it, the architecture's
sizes are bounded here too (`edgeclip.formats.arch_bounds`), so a forged config cannot make
`build(arch)` allocate more than its weights file could fill. See docs/checkpoint-format.md.
Standard library only.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgeclip.errors import CheckpointError
from edgeclip.formats.arch_bounds import arch_problem, parameter_estimate
from edgeclip.formats.jsonbound import load_bounded

FORMAT = "edgeclip-checkpoint"
FORMAT_VERSION = 2  # what this edgeclip writes: 2 added a sentence encoder's `model.arch.sentence` head
READ_VERSIONS = (1, 2)
POOLINGS = ("mean", "cls")  # the sentence-encoder poolings the exported graph implements
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 16 << 20
MAX_TENSORS = 100_000
MAX_DIMS, MAX_DIM = 8, 1 << 31
# How far the architecture's parameter estimate may exceed the weights the checkpoint records.
MAX_ESTIMATE_RATIO = 4
# The dtypes a checkpoint may hold (torch names without the `torch.` prefix).
DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")


def read_config(path: Path) -> dict:
    """The parsed document of `path`, checked against the schema; CheckpointError says what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this directory is not an edgeclip checkpoint, re-export it")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes, over the limit of {MAX_CONFIG_BYTES} "
                              "for a checkpoint config; re-export the checkpoint")
    try:
        document = load_bounded(path.read_bytes(), MAX_CONFIG_BYTES)
    except ValueError as err:
        raise CheckpointError(f"{path} {err}; re-export the checkpoint") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(
            f"{path}: wrong format {found!r}, expected {FORMAT!r}; this is not an edgeclip checkpoint"
        )
    version = document.get("format_version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise CheckpointError(
            f"{path}: unsupported format_version {version!r} (this edgeclip reads "
            f"{', '.join(map(str, READ_VERSIONS))}); "
            "use the edgeclip version that wrote it or re-export"
        )
    problem = _schema_problem(document) or _head_problem(document["model"], version)
    if problem:
        raise CheckpointError(f"{path}: malformed config, {problem}; re-export the checkpoint")
    return document


def _schema_problem(document: dict) -> str | None:
    weights = document.get("weights")
    if not isinstance(weights, dict):
        return "'weights' is not an object"
    if not isinstance(weights.get("file"), str) or weights["file"] in ("", ".", "..") or "/" in weights["file"]:
        return f"'weights.file' {weights.get('file')!r} is not a plain file name"
    if not isinstance(weights.get("sha256"), str) or type(weights.get("bytes")) is not int or weights["bytes"] < 0:
        return "'weights' lacks a sha256 string or a bytes count"
    tensors = document.get("tensors")
    if not isinstance(tensors, dict):
        return "'tensors' is not an object"
    model = document.get("model")
    if not isinstance(model, dict):
        return "'model' is missing or not an object"
    return _tensors_problem(tensors) or _model_problem(model, tensors)


def _tensors_problem(tensors: dict) -> str | None:
    """Every recorded tensor is well formed. That the weights file holds exactly these tensors is
    proven by reading it (read_checkpoint, steps 4-8 of docs/checkpoint-format.md), before any model
    is built, so the parameter bound below rests on tensors that exist."""
    if len(tensors) > MAX_TENSORS:
        return f"'tensors' lists {len(tensors)} tensors, over the limit of {MAX_TENSORS}"
    for name, entry in tensors.items():
        if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
            return f"tensor {name[:80]!r} has no known dtype (known: {', '.join(DTYPES)})"
        if not _is_shape(entry.get("shape")):
            return f"tensor {name[:80]!r} has shape {str(entry.get('shape'))[:60]}, not a list of at most {MAX_DIMS} sizes"
    return None


def _model_problem(model: dict, tensors: dict) -> str | None:
    """The model config's sizes, bounded before `build(arch)` allocates anything. The checkpoint
    layer takes any caller config, so each field is checked where present: `family`, `arch` and
    `quant.layers` are what edgeclip.models.model_io writes."""
    if "family" in model and not isinstance(model["family"], str):
        return "'model.family' is not a family name"
    if "arch" in model and not isinstance(model["arch"], dict):
        return "'model.arch' is not an object"
    quant = model.get("quant")
    if quant is not None and not (isinstance(quant, dict) and isinstance(quant.get("layers", {}), dict)):
        return "'model.quant' is neither null nor an object with a 'layers' table"
    layers = (quant or {}).get("layers", {})
    for name, layer in layers.items():
        if not isinstance(layer, dict) or not _is_shape(layer.get("shape")) or not layer["shape"]:
            return f"'model.quant.layers.{name[:80]}.shape' is not a list of 1 to {MAX_DIMS} sizes"
        if type(layer.get("rows_per_scale")) is not int or not 1 <= layer["rows_per_scale"] <= layer["shape"][0]:
            return f"'model.quant.layers.{name[:80]}.rows_per_scale' is not a count from 1 to its rows"
    if "arch" not in model:
        return None
    problem = arch_problem(model["arch"])
    if problem:
        return problem
    recorded = sum(math.prod(e["shape"]) for e in tensors.values()) + sum(math.prod(v["shape"]) for v in layers.values())
    estimate = parameter_estimate(model["arch"])
    if estimate > MAX_ESTIMATE_RATIO * max(recorded, 1):
        return (f"'model.arch' describes about {estimate} parameters but the checkpoint records {recorded} "
                f"weights (more than {MAX_ESTIMATE_RATIO}x fewer); the architecture does not match its weights")
    return None


def _head_problem(model: dict, version: int) -> str | None:
    """A sentence encoder's head (`arch.sentence`, version 2): pooling, casing, vocabulary hash."""
    arch = model.get("arch") or {}
    if "sentence" not in arch:
        return None
    head = arch["sentence"]
    if version < 2:
        return "'model.arch.sentence' needs format_version 2"
    if not isinstance(head, dict) or head.get("pooling") not in POOLINGS:
        return f"'model.arch.sentence.pooling' is not one of {', '.join(POOLINGS)}"
    if type(head.get("lowercase", True)) is not bool:
        return "'model.arch.sentence.lowercase' is not true or false"
    digest = head.get("vocab_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64
                                   and all(c in "0123456789abcdef" for c in digest)):
        return "'model.arch.sentence.vocab_sha256' is not 64 lowercase hex digits"
    return None


def _is_shape(shape) -> bool:
    return (isinstance(shape, list) and len(shape) <= MAX_DIMS
            and all(type(d) is int and 0 <= d <= MAX_DIM for d in shape))


def one_line(err: Exception) -> str:
    """An exception's message on one line, for error messages that must stay one line."""
    return " ".join(str(err).split())
