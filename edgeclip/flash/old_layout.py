"""Moving installs made by edgeclip-agent before serial protocol 2 into the one layout.

The old agent kept one slot per folder: `DIR/versions/<name>-<sha12>/` (the current version and
the one before it, whatever their names), `DIR/current -> versions/<name>-<sha12>` and partial
uploads in `DIR/.partial/<sha256>.part`. They are migrated, not read in place, so that every tool
(this agent, deploy's shell script, rollback, profile) knows one layout only; the move is a few
renames inside one file system, safe to repeat after a power cut. Per name, the old current (or
else the newest) version becomes `current` and the next newest `previous`; an old version of
another name becomes that name's own current version, since each name now has its own slot.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from edgeclip.flash.install import link_target, point, remove_old_versions
from edgeclip.formats.layout import CURRENT, PREVIOUS, STAGING, VERSIONS, name_problem
from edgeclip.fsutil import fsync_dir

OLD_PARTIALS = ".partial"
OLD_VERSION = re.compile(r"(.+)-([0-9a-f]{12})")
HOLD = ".old-layout"


def migrate(root: Path) -> list[str]:
    """Bring `root` into the one layout if it holds the old one; returns what moved, for the log.

    The old `versions/` and `current` are first renamed aside into `.old-layout/` (so a model named
    `versions` or `current` cannot collide with them), then sorted into their names' folders."""
    root = Path(root)
    moved = _move_partials(root)
    hold = root / HOLD
    if (root / CURRENT).is_symlink():  # in the one layout `ROOT/current` can only be an app's folder
        hold.mkdir(exist_ok=True)
        if (root / VERSIONS).is_dir():
            os.rename(root / VERSIONS, hold / VERSIONS)
        os.rename(root / CURRENT, hold / CURRENT)
        fsync_dir(root)
    if not hold.is_dir():
        return moved
    old_link = hold / CURRENT
    old_current = _old_version(Path(os.readlink(old_link)).name) if old_link.is_symlink() else None
    old_versions = hold / VERSIONS
    for entry in sorted(old_versions.iterdir()) if old_versions.is_dir() else ():
        found = _old_version(entry.name)
        if not found or not entry.is_dir():
            continue  # extraction leftovers the old agent would also remove
        name, version = found
        destination = root / name / VERSIONS / version
        destination.parent.mkdir(parents=True, exist_ok=True)
        if not destination.exists():
            os.rename(entry, destination)
            moved.append(f"{VERSIONS}/{entry.name} -> {name}/{VERSIONS}/{version}")
    # Every name now in the folder, also those moved before a power cut, gets its links.
    for app in sorted(p for p in root.iterdir() if not p.name.startswith(".") and (p / VERSIONS).is_dir()):
        _link_versions(app, old_current[1] if old_current and old_current[0] == app.name else None)
    shutil.rmtree(hold)
    fsync_dir(root)
    return moved


def _old_version(folder: str) -> tuple[str, str] | None:
    """(name, sha12) of an old version folder; None for the old agent's extraction leftovers
    (`.<name>-<sha12>.XXXXXXXX` do not end in the version). Old names were already cut to
    [A-Za-z0-9._-]; a leading dot, which the one layout keeps for its own folders, is dropped."""
    found = OLD_VERSION.fullmatch(folder)
    if not found:
        return None
    name = found.group(1).lstrip(".") or "bundle"
    return (name, found.group(2)) if name_problem(name) is None else None


def _link_versions(app: Path, old_current: str | None) -> None:
    """`current` (and `previous`) for one migrated name, unless an earlier run already made them."""
    if link_target(app, CURRENT) or not (app / VERSIONS).is_dir():
        return
    versions = sorted((p for p in (app / VERSIONS).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    order = [p.name for p in versions]
    if old_current in order:
        order.remove(old_current)
        order.insert(0, old_current)
    if len(order) > 1:
        point(app, PREVIOUS, f"{VERSIONS}/{order[1]}")  # previous first: `current` marks this name as done
    if order:
        point(app, CURRENT, f"{VERSIONS}/{order[0]}")
    remove_old_versions(app)


def _move_partials(root: Path) -> list[str]:
    old = root / OLD_PARTIALS
    if not old.is_dir():
        return []
    staging = root / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    moved = []
    for part in sorted(old.glob("*.part")):
        if not (staging / part.name).exists():
            os.rename(part, staging / part.name)
            moved.append(f"{OLD_PARTIALS}/{part.name} -> {STAGING}/{part.name}")
    shutil.rmtree(old)
    return moved
