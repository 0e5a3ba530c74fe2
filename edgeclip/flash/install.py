"""Installing a received bundle on the device, in the one layout (edgeclip.formats.layout;
docs/bundle-format.md, "On the device"): `ROOT/<name>/versions/<sha12>/`, `current`, `previous`.

The same rules as deploy's install script, in Python for boards reached over serial: the new
version is extracted and verified in `versions/.incoming.<sha12>` and renamed into place, then
`current` is swapped in one `os.replace`, so a power cut leaves the old or the new version live,
never a mix. The version that was current becomes `previous` (the rollback target); older ones
are removed. Installing the version that is already current changes nothing, `previous` included.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
from pathlib import Path

from edgeclip.errors import BundleError
from edgeclip.formats.bundle import MANIFEST, read_manifest, sha256_file, verify_bundle
from edgeclip.formats.layout import CURRENT, PREVIOUS, VERSIONS, manifest_bytes, name_problem, version_of
from edgeclip.fsutil import fsync_dir, write_synced

LINK_TARGET = re.compile(rf"{VERSIONS}/[0-9a-f]{{12}}")


def install_bundle(root: Path, bundle: Path, sha256: str, arch: str) -> dict:
    """Verify `bundle` for `arch`, extract it and make it current. Returns what is now installed."""
    name = read_manifest(bundle).get("name")
    if problem := name_problem(name):
        raise BundleError(f"{problem}; rebuild it with another name")
    raw = manifest_bytes(bundle)
    app, version = Path(root) / name, version_of(sha256)
    target = app / VERSIONS / version
    if _intact(target, json.loads(raw)):
        verify_bundle(bundle, arch=arch)  # already extracted once: still refuse a bundle that is wrong
        kept = target / MANIFEST
        if not kept.is_file() or kept.read_bytes() != raw:  # a version migrated from the old layout has none
            _write_file(kept, raw)
    else:
        incoming = app / VERSIONS / f".incoming.{version}"
        _remove(incoming)
        try:
            verify_bundle(bundle, arch=arch, extract_to=incoming)
            write_synced(incoming / MANIFEST, raw)
        except BaseException:
            _remove(incoming)  # a failed install (a full disk, say) leaves nothing half-written
            raise
        incoming.chmod(0o755)  # extracted from a private temporary folder; the runner may be another user
        _remove(target)  # a damaged copy
        os.replace(incoming, target)
    old = link_target(app, CURRENT)
    new = f"{VERSIONS}/{version}"
    if old != new:
        point(app, CURRENT, new)
        if old:
            point(app, PREVIOUS, old)
    remove_old_versions(app)
    current, previous = link_target(app, CURRENT), link_target(app, PREVIOUS)
    return {"installed": f"{name}/{current}", "previous": f"{name}/{previous}" if previous else None}


def link_target(app: Path, link: str) -> str | None:
    """`versions/<sha12>` that `app/link` names, or None (absent, or not a link this layout makes)."""
    path = app / link
    if not path.is_symlink():
        return None
    target = os.readlink(path)
    return target if LINK_TARGET.fullmatch(target) else None


def is_current(root: Path, name: str, sha256: str, manifest_sha256: str) -> bool:
    """This bundle is `name`'s current version and its folder is whole: its manifest.json is the
    bundle's and every member has its size. Contents were hashed when it was installed; hashing a
    100 MB install again would outlast the host's wait for the answer to HELLO."""
    if name_problem(name) or link_target(Path(root) / name, CURRENT) != f"{VERSIONS}/{version_of(sha256)}":
        return False
    folder = Path(root) / name / VERSIONS / version_of(sha256)
    try:
        if sha256_file(folder / MANIFEST) != manifest_sha256:
            return False
        members = json.loads((folder / MANIFEST).read_bytes())["members"]
        return all(_has_size(folder / member, entry["bytes"]) for member, entry in members.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def list_installs(root: Path) -> dict[str, dict]:
    """`{name: {"current", "previous", "versions"}}` for every app under `root`."""
    found = {}
    for app in sorted(Path(root).iterdir()) if Path(root).is_dir() else ():
        if app.name.startswith(".") or not (app / VERSIONS).is_dir():
            continue
        versions = sorted(p.name for p in (app / VERSIONS).iterdir() if p.is_dir() and not p.name.startswith("."))
        found[app.name] = {"current": _version(link_target(app, CURRENT)),
                           "previous": _version(link_target(app, PREVIOUS)), "versions": versions}
    return found


def point(app: Path, link: str, target: str) -> None:
    """Swap `app/link` to `target` atomically: a new symlink renamed over the old one."""
    temporary = app / f".{link}.new"
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, app / link)
    fsync_dir(app)


def remove_old_versions(app: Path) -> None:
    """Everything in `versions/` but current and previous: older versions and power-cut leftovers."""
    keep = {Path(t).name for t in (link_target(app, CURRENT), link_target(app, PREVIOUS)) if t}
    for entry in (app / VERSIONS).iterdir():
        if entry.name not in keep:
            _remove(entry)


def _intact(folder: Path, manifest: dict) -> bool:
    if not folder.is_dir() or folder.is_symlink():
        return False
    try:
        return all(_inside(member) and sha256_file(folder / member) == entry["sha256"]
                   for member, entry in manifest["members"].items())
    except OSError:
        return False


def _inside(member: str) -> bool:
    """A member path that stays in its folder (the manifest is read here before the bundle is verified)."""
    return posixpath.normpath(member) == member and not member.startswith(("/", "../")) and member != ".."


def _has_size(path: Path, size: int) -> bool:
    return path.is_file() and not path.is_symlink() and path.stat().st_size == size


def _write_file(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.new")
    write_synced(temporary, data)
    os.replace(temporary, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _version(link: str | None) -> str | None:
    return Path(link).name if link else None
