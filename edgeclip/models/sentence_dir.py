"""What a sentence-transformers directory says about its head and tokenizer, beyond BERT's own
config: the pooling (modules.json -> the Pooling module's config.json), the casing
(tokenizer_config.json) and which WordPiece vocabulary it uses (vocab.txt's sha256), so a bundle
pools and tokenizes exactly as the model was trained. Every file is size-checked before parsing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgeclip.errors import ModelError

POOLINGS = ("mean", "cls")  # what the exported graph implements
MAX_JSON_BYTES = 1 << 20
MAX_VOCAB_BYTES = 16 << 20
_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_UNSUPPORTED = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                "pooling_mode_lasttoken")
DEFAULT = {"pooling": "mean", "lowercase": True}  # a plain BERT directory: sentence-transformers' defaults


def _json(path: Path):
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ModelError(f"{path} is {path.stat().st_size} bytes, over the {MAX_JSON_BYTES} byte limit; "
                         "it is not a sentence-transformers config")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path} is not valid JSON ({err}); re-save the model with sentence-transformers") from err


def _pooling_folder(directory: Path) -> Path | None:
    modules = directory / "modules.json"
    if not modules.is_file():
        return None
    entries = _json(modules)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ModelError(f"{modules} is not a list of modules; re-save the model with sentence-transformers")
    for entry in entries:
        if str(entry.get("type", "")).endswith(".Pooling"):
            folder = (directory / str(entry.get("path", ""))).resolve()
            if directory.resolve() not in (folder, *folder.parents):
                raise ModelError(f"{modules} puts the pooling config outside the model directory; refusing it")
            return folder
    return None


def pooling_of(directory: Path) -> str:
    """'mean' or 'cls', from the Pooling module's config (mean when the directory has none)."""
    folder = _pooling_folder(directory)
    if folder is None or not (folder / "config.json").is_file():
        return DEFAULT["pooling"]
    config = _json(folder / "config.json")
    if not isinstance(config, dict):
        raise ModelError(f"{folder / 'config.json'} is not a JSON object; re-save the model with sentence-transformers")
    other = [key for key in _UNSUPPORTED if config.get(key)]
    chosen = [mode for key, mode in _MODES.items() if config.get(key)]
    if other or len(chosen) != 1:
        raise ModelError(f"{folder / 'config.json'} asks for pooling {other + chosen or 'none'}; edgeclip bundles "
                         f"pool with exactly one of {', '.join(POOLINGS)} (pooling_mode_mean_tokens or _cls_token)")
    return chosen[0]


def vocab_sha256(path: Path) -> str:
    if not path.is_file() or path.stat().st_size > MAX_VOCAB_BYTES:
        raise ModelError(f"{path} is missing or over {MAX_VOCAB_BYTES} bytes; a BERT sentence encoder needs its "
                         "WordPiece vocab.txt beside config.json")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sentence_head(directory: Path) -> dict:
    """The head facts a checkpoint records under arch["sentence"]: pooling, lowercase, vocab_sha256."""
    lowercase = DEFAULT["lowercase"]
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file():
        config = _json(tokenizer_config)
        if isinstance(config, dict) and isinstance(config.get("do_lower_case"), bool):
            lowercase = config["do_lower_case"]
    return {"pooling": pooling_of(directory), "lowercase": lowercase,
            "vocab_sha256": vocab_sha256(directory / "vocab.txt")}
