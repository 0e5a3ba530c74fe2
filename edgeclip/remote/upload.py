"""Resumable SFTP upload: bytes already on the board are kept across dropped links, so a flaky
Wi-Fi board still gets a 50 MB bundle. The remote file is named by the content's hash, so a resumed
prefix always belongs to the same bytes; the final sha256 check on the board catches anything else.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edgeclip.errors import RemoteError
from edgeclip.remote.connect import Connection, Session

CHUNK = 32 * 1024
Progress = Callable[[int, int, float], None]
"""progress(bytes_on_device, total_bytes, bytes_per_second_of_this_attempt)"""


@dataclass
class UploadStats:
    total: int
    sent: int = 0
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)

    @property
    def bytes_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def upload(session: Session, local: Path, remote: str, progress: Progress | None = None) -> UploadStats:
    stats = UploadStats(total=local.stat().st_size)
    started = time.monotonic()
    session.retrying(lambda conn: _send_rest(conn, local, remote, stats, progress))
    stats.seconds = time.monotonic() - started
    return stats


def _send_rest(conn: Connection, local: Path, remote: str, stats: UploadStats, progress: Progress | None) -> None:
    sftp = conn.sftp()
    with sftp_errors(conn, remote):
        offset = _remote_size(sftp, remote)
        if offset > stats.total:
            sftp.remove(remote)
            offset = 0
        if offset:
            stats.resumed_from.append(offset)
        attempt_start, attempt_bytes = time.monotonic(), 0
        with open(local, "rb") as src, sftp.open(remote, "r+b" if offset else "wb") as dst:
            dst.set_pipelined(True)
            dst.seek(offset)
            src.seek(offset)
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                attempt_bytes += len(chunk)
                stats.sent += len(chunk)
                if progress is not None:
                    rate = attempt_bytes / max(time.monotonic() - attempt_start, 1e-6)
                    progress(offset + attempt_bytes, stats.total, rate)


def put_file(conn: Connection, local: Path, remote: str) -> None:
    """One small file in one go (no resume: the inputs of a remote run are sent again if it fails)."""
    try:
        source = open(local, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as err:
        raise RemoteError(f"cannot read {local} ({err.strerror}); check the file") from err
    with source, sftp_errors(conn, remote):
        conn.sftp().putfo(source, remote)


@contextmanager
def sftp_errors(conn: Connection, remote: str, doing: str = "uploading to"):
    """An SFTP failure as one RemoteError that says what to do; a dead link as a LinkError."""
    try:
        yield
    except PermissionError as err:
        raise RemoteError(f"{conn.endpoint}: permission denied {doing} {remote} ({err}); check the home folder's owner") from err
    except OSError as err:
        if _is_disk_full(err):
            raise RemoteError(f"{conn.endpoint}: the board's disk is full while {doing} {remote}; free space there") from err
        if conn.alive and not isinstance(err, TimeoutError):
            raise RemoteError(
                f"{conn.endpoint}: {doing} {remote} failed ({err}); a full disk on the board shows as 'Failure'"
            ) from err
        raise conn.lost(err, f"{doing} {remote}") from err
    except (EOFError, paramiko.SSHException) as err:
        raise conn.lost(err, f"{doing} {remote}") from err


def _remote_size(sftp: paramiko.SFTPClient, remote: str) -> int:
    try:
        return sftp.stat(remote).st_size or 0
    except FileNotFoundError:
        return 0


def _is_disk_full(err: OSError) -> bool:
    return err.errno == errno.ENOSPC or "No space left" in str(err)
