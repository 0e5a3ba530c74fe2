"""The one install layout on a device, shared by `edgeclip deploy` (SSH, a POSIX shell script on the
board) and `edgeclip-agent` (serial): the names and rules both sides must agree on. The layout
itself is documented once, in docs/bundle-format.md ("On the device").

    ROOT/.staging/<sha256>.part           a partial upload, keyed by the bundle's sha256
    ROOT/.staging/run.XXXXXX/             one `classify|embed|tokenize --host` run's files (SSH only)
    ROOT/<name>/versions/<sha12>/         one installed version: manifest.json and every member
    ROOT/<name>/current  -> versions/<sha12>
    ROOT/<name>/previous -> versions/<sha12>

Standard library only: the device agent imports it.
"""

from __future__ import annotations

import hashlib

from edgeclip.formats.bundle import read_manifest_bytes

SSH_ROOT = ".edgeclip"  # ROOT for SSH deploys, under the login user's home
STAGING = ".staging"
VERSIONS = "versions"
CURRENT = "current"
PREVIOUS = "previous"
VERSION_CHARS = 12


def version_of(sha256: str) -> str:
    """The folder name of a bundle's version: the first 12 hex digits of the bundle's sha256."""
    return sha256[:VERSION_CHARS]


def partial_name(sha256: str) -> str:
    return f"{sha256}.part"


def name_problem(name: object) -> str | None:
    """Why a bundle name cannot be its folder `ROOT/<name>`, or None. Names are never rewritten
    (so `rollback NAME` finds them); a leading dot is kept for edgeclip's own folders (.staging)."""
    if not isinstance(name, str) or not name:
        return f"bundle name {name!r} is empty or not text"
    if name.startswith(".") or "/" in name or any(ord(c) < 32 for c in name):
        return f"bundle name {name!r} cannot be a folder name on the device (a leading '.', a '/' or control characters)"
    return None


def manifest_bytes(bundle) -> bytes:
    """The bundle's `manifest.json` exactly as the tar holds it: what an installed version keeps,
    and whose sha256 (`manifest_sha256`) says which bundle a version folder came from."""
    return read_manifest_bytes(bundle)


def manifest_sha256(bundle) -> str:
    return hashlib.sha256(manifest_bytes(bundle)).hexdigest()
