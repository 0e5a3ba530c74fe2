"""Checks a local Hugging Face model directory before transformers sees it.

transformers treats any string it cannot find on disk as a hub id and tries the network; checking
the directory ourselves turns every such case into a clear `ModelError` and keeps edgeclip offline.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError

from edgeclip.errors import ModelError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def checked_model_dir(path, what: str) -> tuple[Path, dict]:
    """Return (directory, parsed config.json) or raise ModelError naming the path and the fix."""
    directory = Path(path)
    hint = (
        f"pass a local {what} directory holding config.json and model.safetensors (edgeclip never downloads)"
    )
    if not directory.exists():
        raise ModelError(f"{what} directory {str(path)!r} does not exist; {hint}")
    if not directory.is_dir():
        raise ModelError(f"{what} path {str(path)!r} is a file, not a directory; {hint}")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{what} directory {str(path)!r} has no config.json; {hint}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(
            f"{config_file} is not valid JSON ({err}); re-save the model with save_pretrained"
        ) from err
    if not isinstance(config, dict):
        raise ModelError(f"{config_file} must hold a JSON object; re-save the model with save_pretrained")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(
            f"{what} directory {str(path)!r} has no weights (expected one of {', '.join(WEIGHT_FILES)}); {hint}"
        )
    return directory, config


def require_model_type(config: dict, expected: str, directory: Path) -> None:
    """Refuse a directory of another architecture before transformers builds the wrong model."""
    found = config.get("model_type")
    if found != expected:
        raise ModelError(
            f"{directory / 'config.json'} has model_type {found!r}, expected {expected!r}; "
            f"point edgeclip at a {expected} model directory"
        )


def load_pretrained_strict(model_class, directory: Path, what: str):
    """`model_class.from_pretrained` offline in float32, eval mode, with every weight required.

    Missing weights are an error, not a silent random init: a half-loaded teacher would poison
    distillation without any visible failure.
    """
    try:
        model, info = model_class.from_pretrained(
            directory, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise ModelError(
            f"could not load {what} from {directory}: {err}; re-save it with save_pretrained"
        ) from err
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ModelError(
            f"{what} weights in {directory} lack {len(missing)} tensors (first: {missing[:5]}); "
            "the checkpoint does not match its config.json"
        )
    return model.eval()
