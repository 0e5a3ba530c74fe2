"""The checkpoint directory: `model.safetensors` plus a `config.json` that vouches for it.

config.json records the weights file's size and sha256 and every tensor's dtype and shape, so a
reader can tell a truncated, bit-flipped or mismatched file apart and say so, instead of handing a
broken model to the compiler. Writes are atomic (build in a sibling directory, fsync, swap) and
deterministic (same inputs, same bytes), so checkpoints can be compared and cached by hash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from edgeclip.errors import CheckpointError
from edgeclip.formats.checkpoint import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    one_line,
    read_config,
)
from edgeclip.fsutil import fsync_dir, write_synced

_OWN_FILES = {CONFIG_FILE, WEIGHTS_FILE}


def write_checkpoint(directory, tensors: dict, config: dict, replace: bool = False) -> Path:
    """Write `tensors` (numpy arrays or torch tensors) and the caller's `config` into `directory`.

    A directory that already holds a model (a checkpoint, or the model a checkpoint was made from)
    is replaced as a whole only with `replace`; one holding anything else is always refused.
    """
    directory = Path(directory)
    check_writable(directory, replace)
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint config must be a dict, got {type(config).__name__}")
    prepared = _prepared_tensors(tensors)
    weights = save_safetensors(prepared)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": hashlib.sha256(weights).hexdigest(),
            "bytes": len(weights),
        },
        "tensors": {name: _describe(t) for name, t in prepared.items()},
        "model": config,
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        write_synced(staging / WEIGHTS_FILE, weights)
        write_synced(staging / CONFIG_FILE, _config_bytes(document, directory).encode())
        fsync_dir(staging)
        _swap_into_place(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_checkpoint(directory) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (tensors, the caller's model config) after checking the files against each other."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory}: checkpoint directory does not exist; pass a directory written by write_checkpoint"
        )
    document = read_config(directory / CONFIG_FILE)
    weights_path = directory / document["weights"]["file"]
    data = _read_weights(weights_path, document["weights"])
    try:
        tensors = load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types for every malformed header
        raise CheckpointError(
            f"{weights_path}: safetensors header unparsable ({one_line(err)}); re-export the checkpoint"
        ) from err
    _check_tensors_match(weights_path, tensors, document["tensors"])
    return tensors, document["model"]


def check_writable(directory: Path, replace: bool) -> None:
    """Refuse to write a checkpoint over a file, a foreign folder, or (without `replace`) a model."""
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory; choose another checkpoint path")
    held = sorted(p.name for p in directory.iterdir() if p.name in _OWN_FILES) if directory.is_dir() else []
    if held and not replace:
        raise CheckpointError(f"{directory}: already holds a model ({', '.join(held)}); write to a new directory, "
                              "or pass --force to replace it")
    if directory.is_dir():
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in _OWN_FILES)
        if foreign:
            raise CheckpointError(
                f"{directory}: refusing to replace a directory that holds files other than a checkpoint "
                f"({', '.join(foreign[:3])}); choose an empty or new directory"
            )


def _prepared_tensors(tensors: dict) -> dict[str, torch.Tensor]:
    """Contiguous CPU torch tensors, with storage sharing broken (safetensors refuses shared memory)."""
    if not isinstance(tensors, dict):
        raise CheckpointError(
            f"checkpoint tensors must be a dict of name -> tensor, got {type(tensors).__name__}"
        )
    prepared = {}
    seen_storages = set()
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"checkpoint tensor names must be non-empty strings, got {name!r}")
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint tensor {name!r} is a {type(value).__name__}, not a numpy array or torch tensor"
            )
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage and storage in seen_storages:
            tensor = tensor.clone()
        seen_storages.add(storage)
        prepared[name] = tensor
    return prepared


def _describe(tensor: torch.Tensor) -> dict:
    return {"dtype": _dtype_name(tensor.dtype), "shape": list(tensor.shape)}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _config_bytes(document: dict, directory: Path) -> str:
    try:
        return json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{directory}: model config is not plain JSON ({err}); use only dicts, lists, str, int, finite floats, bool, None"
        ) from err






def _swap_into_place(staging: Path, directory: Path) -> None:
    """Make `staging` become `directory`; afterwards `staging` holds the old checkpoint, if any.

    With an existing directory, Linux's renameat2(RENAME_EXCHANGE) swaps both names in one atomic
    step; elsewhere `_replace_by_renames` does it in three.
    """
    if not directory.exists():
        os.rename(staging, directory)
    elif not _exchange(staging, directory):
        _replace_by_renames(staging, directory)
    fsync_dir(directory.parent)


def _replace_by_renames(staging: Path, directory: Path) -> None:
    """Swap two directories' names without renameat2.

    A crash after the first rename leaves the old checkpoint whole under the hidden
    `.NAME.tmp-*-old` name and the new one whole under `.NAME.tmp-*`: never a mix of the two.
    """
    parked = staging.with_name(staging.name + "-old")
    os.rename(directory, parked)
    os.rename(staging, directory)
    os.rename(parked, staging)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2; False where the platform lacks it."""
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name), "renameat2", None) if libc_name else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _read_weights(path: Path, record: dict) -> bytes:
    if not path.is_file():
        raise CheckpointError(
            f"{path}: weights file missing; copy the whole checkpoint directory or re-export it"
        )
    size, expected = path.stat().st_size, record["bytes"]
    if size != expected:
        what = "truncated" if size < expected else "size mismatch, longer than recorded"
        raise CheckpointError(
            f"{path}: {what} ({size} bytes, config.json records {expected}); re-copy or re-export the checkpoint"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:
        raise CheckpointError(
            f"{path}: corrupted: sha256 mismatch (file {digest[:12]}…, config.json records {record['sha256'][:12]}…); "
            "re-copy or re-export the checkpoint"
        )
    return data


def _check_tensors_match(path: Path, tensors: dict[str, torch.Tensor], recorded: dict) -> None:
    missing = sorted(set(recorded) - set(tensors))
    unexpected = sorted(set(tensors) - set(recorded))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensor names differ from config.json (missing {_few(missing)}, unexpected {_few(unexpected)}); "
            "the weights belong to another checkpoint, re-export it"
        )
    for name, tensor in sorted(tensors.items()):
        expected = recorded[name] if isinstance(recorded[name], dict) else {}
        actual = _describe(tensor)
        for field in ("dtype", "shape"):
            if actual[field] != expected.get(field):
                raise CheckpointError(
                    f"{path}: tensor {name!r} has {field} {actual[field]} but config.json records "
                    f"{expected.get(field)}; the files do not belong together, re-export the checkpoint"
                )


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"[{shown}{more}]"
