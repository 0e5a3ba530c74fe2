"""Turn a failed remote command into one sentence that says what went wrong on the board and what
to do, instead of a raw exit status. The patterns are the messages glibc, coreutils and the dynamic
loader print, which are the same on every Linux board.
"""

from __future__ import annotations

import re

from edgeclip.errors import RemoteError
from edgeclip.remote.connect import CommandResult

_MISSING_LIBRARY = re.compile(r"error while loading shared libraries: ([^:\s]+)")
KILLED_BY_SIGKILL = 128 + 9


def explain(result: CommandResult, doing: str, host: str) -> RemoteError:
    text = result.err.strip() or result.out.strip()
    last = text.splitlines()[-1] if text else f"exit status {result.exit_status}"
    if "No space left on device" in text:
        return RemoteError(f"{host}: the board's disk is full while {doing} ({last}); free space there or use a bigger card")
    if "Disk quota exceeded" in text:
        return RemoteError(f"{host}: disk quota exceeded while {doing} ({last}); free space in the login user's home")
    if "Permission denied" in text or "Read-only file system" in text:
        return RemoteError(f"{host}: permission denied while {doing} ({last}); log in as a user that owns its home folder")
    library = _MISSING_LIBRARY.search(text)
    if library:
        return RemoteError(
            f"{host}: missing runtime library {library.group(1)} while {doing}; install it on the board "
            "or rebuild the bundle so it carries that library"
        )
    if result.exit_status == KILLED_BY_SIGKILL or "Killed" in text:
        return RemoteError(
            f"{host}: out of memory while {doing}: the process was killed (SIGKILL, usually the kernel's OOM killer); "
            "use a smaller model or free memory on the board"
        )
    if result.exit_status == 127:
        return RemoteError(f"{host}: a command is missing on the board while {doing} ({last}); install it there")
    return RemoteError(f"{host}: {doing} failed with exit status {result.exit_status} ({last})")
