"""The demo's cache: what is expensive and deterministic (a quick teacher, the student, evaluation
scores, bundles) is kept under `$EDGECLIP_CACHE/demo/<kind>/<key>`, keyed by everything that goes
into it: the input files' bytes, the settings, and the sources of the edgeclip packages that make
it, so an edit to those (or a different checkpoint) never reuses a stale result, while an edit to,
say, the SSH code does not retrain the student. A demo module that computes a cached result
itself puts its own file's digest into the key.

An entry is written into a temporary folder and renamed into place only when complete, so an
interrupted run leaves nothing that a later run would mistake for a result.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import edgeclip
from edgeclip.fsutil import cache_root

SOURCE_SUFFIXES = (".py", ".cc", ".h", ".toml", ".json")
# The packages each kind of result is made by, besides edgeclip's top-level modules (errors, fsutil...).
MAKERS = {
    "training": ("edgeclip.quant", "edgeclip.models", "edgeclip.export", "edgeclip.training"),
    "bundle": ("edgeclip.quant", "edgeclip.models", "edgeclip.export", "edgeclip.lower", "edgeclip.bundle",
               "edgeclip.targets", "edgeclip.schedules"),
}


@functools.cache
def source_digest(maker: str) -> str:
    """sha256 of the source files (code, runner, board and schedule data) of the packages in MAKERS[maker]."""
    top = Path(edgeclip.__file__).parent
    files = [(f"edgeclip/{path.name}", path) for path in sorted(top.glob("*.py"))]
    for name in MAKERS[maker]:
        root = Path(next(iter(importlib.import_module(name).__path__)))
        files += [(f"{name}/{path.relative_to(root).as_posix()}", path) for path in sorted(root.rglob("*"))
                  if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts]
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(f"{name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def tree_digest(path) -> str:
    """sha256 of a file, or of every file under a folder (names and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(f"{file.relative_to(path).as_posix() if file != path else file.name}\0".encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def key(maker: str, *parts) -> str:
    """A short digest of JSON-able inputs and the sources of what makes the result (see MAKERS)."""
    text = json.dumps([maker, source_digest(maker), *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(kind: str, entry_key: str, make: Callable[[Path], None]) -> tuple[Path, bool]:
    """(folder, was_cached): the entry's folder, made by `make(folder)` on a miss."""
    final = cache_root() / "demo" / kind / entry_key
    if final.is_dir():
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{entry_key}."))
    try:
        make(staging)
        os.replace(staging, final)
    except OSError:
        if not final.is_dir():  # another demo finished the same entry first: theirs is as good
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final, False


def cached_json(kind: str, entry_key: str, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """A JSON result kept in the cache (evaluation scores)."""
    def make(folder: Path) -> None:
        (folder / "result.json").write_text(json.dumps(compute(), indent=2, sort_keys=True) + "\n")

    folder, hit = cached(kind, entry_key, make)
    return json.loads((folder / "result.json").read_text()), hit
