"""Durable file writes shared by checkpoints, bundles, the flash agent and training state, and
the one cache folder edgeclip keeps what it builds once in.

Standard library only: the device-side agent imports it too.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` and force it to disk before returning (the caller renames it into place)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries, so a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_root() -> Path:
    """Where edgeclip keeps what it builds once (teachers, wheels, runners, logs): $EDGECLIP_CACHE
    or ~/.cache/edgeclip."""
    return Path(os.environ.get("EDGECLIP_CACHE") or Path.home() / ".cache" / "edgeclip")
