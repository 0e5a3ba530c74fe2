"""What reaches the user's terminal: edgeclip's own step headers, progress bars, results and
one-line errors, and nothing else.

TVM's C++ logging, torch's and transformers' warnings, transformers' loading bars, onnxruntime's
advice and the compilers TVM runs all write to file descriptor 2 or to `sys.stderr`. While
`quiet()` is active both point at a log file, and edgeclip's own stderr output goes to `stream()`,
a duplicate of the terminal's descriptor. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TextIO

from edgeclip.fsutil import cache_root

KEEP_LOGS = 30  # the newest logs under the cache; older ones are removed when a verb starts

_terminal: TextIO | None = None
_log: Path | None = None


def stream() -> TextIO:
    """Where edgeclip's progress bars and error lines go: the terminal while quiet, else stderr."""
    return _terminal if _terminal is not None else sys.stderr


def log_path() -> Path | None:
    """The log that holds everything else, while quiet."""
    return _log


def default_log(verb: str) -> Path:
    """~/.cache/edgeclip/logs/VERB-TIMESTAMP-PID.log, for verbs without a run folder of their own."""
    folder = cache_root() / "logs"
    return folder / f"{verb}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"


@contextmanager
def quiet(log: Path) -> Iterator[None]:
    """Send descriptor 2 and `sys.stderr` to `log` until the block ends; `stream()` stays on the terminal."""
    global _terminal, _log
    log.parent.mkdir(parents=True, exist_ok=True)
    _prune(log.parent)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    saved_stderr = sys.stderr
    _terminal = os.fdopen(os.dup(2), "w", buffering=1, errors="backslashreplace")
    _point_fd2_at(log)
    _log = log
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = saved_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        _terminal.close()
        _terminal, _log = None, None


def one_line(text: str, limit: int = 1000) -> str:
    """A tool's error output (one line by contract, but a usage line may follow it) as one line."""
    message = "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "it printed no message"
    return message if len(message) <= limit else message[: limit - 3] + "..."


def move_log(path: Path) -> None:
    """Continue the log in `path` (a run folder's log.txt), starting with what was logged so far."""
    global _log
    if _log is None or path == _log:
        return
    sys.stderr.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_log, "rb") as source, open(path, "ab") as target:
        shutil.copyfileobj(source, target)
    _point_fd2_at(path)
    _log.unlink(missing_ok=True)
    _log = path


def _point_fd2_at(log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def _prune(folder: Path) -> None:
    """Keep the cache's log folder from growing without bound (a run folder's log.txt is never touched)."""
    if folder != cache_root() / "logs":
        return
    try:
        logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[KEEP_LOGS:]:
            old.unlink(missing_ok=True)
    except OSError:  # another edgeclip pruning at the same moment
        pass
