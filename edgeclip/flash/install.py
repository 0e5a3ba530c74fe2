"""Installing a received bundle on the device: `DIR/versions/<name>-<sha12>/` plus a `DIR/current` link.

The new version is extracted (and verified) beside the live one, then `current` is swapped in
one `os.replace`, so a power cut leaves either the old or the new version live, never a mix.
The previous version stays for rollback; older ones are removed to give the disk back.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from edgeclip.formats.bundle import read_manifest, verify_bundle
from edgeclip.fsutil import fsync_dir

VERSIONS = "versions"
CURRENT = "current"


def install_bundle(root: Path, bundle: Path, sha256: str, arch: str) -> dict:
    """Verify `bundle` for `arch`, extract it and make it current. Returns what is now installed."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(read_manifest(bundle).get("name", "bundle")))[:64] or "bundle"
    version = f"{name}-{sha256[:12]}"
    target = root / VERSIONS / version
    if target.is_dir():
        verify_bundle(bundle, arch=arch)  # already extracted once: still refuse a bundle that is wrong
    else:
        verify_bundle(bundle, arch=arch, extract_to=target)
        target.chmod(0o755)  # extracted from a private temporary folder; the runner may be another user
    previous = current_version(root)
    _point_current(root, version)
    _remove_old_versions(root, keep={version, previous})
    return {"installed": f"{VERSIONS}/{version}", "previous": f"{VERSIONS}/{previous}" if previous else None}


def current_version(root: Path) -> str | None:
    link = root / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def _point_current(root: Path, version: str) -> None:
    temporary = root / f".{CURRENT}.new"
    temporary.unlink(missing_ok=True)
    os.symlink(f"{VERSIONS}/{version}", temporary)
    os.replace(temporary, root / CURRENT)
    fsync_dir(root)


def _remove_old_versions(root: Path, keep: set) -> None:
    for entry in (root / VERSIONS).iterdir():
        if entry.name not in keep:  # also clears extraction leftovers from a power cut
            shutil.rmtree(entry, ignore_errors=True)


