"""ProxyCommand, as OpenSSH runs it: the command from the user's own ssh_config (trusted) under
`sh -c`, its stdin and stdout joined to one end of a socket pair that paramiko talks over.

Only validated values are substituted (%h HostName, %p port, %r user, %n the alias as typed, %%),
and only after edgeclip.remote.names passed them, so a host name never becomes shell syntax.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile

from edgeclip.errors import RemoteError
from edgeclip.remote.hosts import Endpoint
from edgeclip.remote.names import check_host, check_user

_TOKEN = re.compile(r"%(.)")
STOP_SECONDS = 2.0


def expand(command: str, endpoint: Endpoint) -> str:
    """`command` with its %-tokens filled in; an unknown token is refused, not passed to the shell."""
    values = {
        "h": check_host(endpoint.hostname, "ProxyCommand %h"),
        "p": str(int(endpoint.port)),
        "r": check_user(endpoint.user, "ProxyCommand %r"),
        "n": check_host(endpoint.alias, "ProxyCommand %n"),
        "%": "%",
    }

    def fill(token: re.Match) -> str:
        if token[1] not in values:
            raise RemoteError(f"ProxyCommand {command!r} uses %{token[1]}, which edgeclip does not fill in; "
                              "use only %h, %p, %r, %n and %%")
        return values[token[1]]

    return _TOKEN.sub(fill, command)


class ProxyProcess:
    """The running ProxyCommand: `sock` is paramiko's end; `close` stops the command."""

    def __init__(self, command: str, endpoint: Endpoint):
        self.command = expand(command, endpoint)
        self.proc: subprocess.Popen | None = None
        self.sock, theirs = socket.socketpair()
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty proxy can never block on it
        try:
            self.proc = subprocess.Popen(["sh", "-c", self.command], stdin=theirs, stdout=theirs,
                                         stderr=self._stderr, start_new_session=True)
        except OSError as err:
            self.close()
            raise RemoteError(f"cannot start ProxyCommand {self.command!r} ({err}); check your ssh config") from err
        finally:
            theirs.close()

    def failure(self) -> str:
        """What the command said before it exited (or that it still runs), for an error message."""
        status = self.proc.poll()
        self._stderr.seek(0)
        said = self._stderr.read()[-300:].decode(errors="replace").strip().replace("\n", " | ")
        state = "still running" if status is None else f"exited with status {status}"
        return f"ProxyCommand {self.command!r} {state}" + (f": {said}" if said else "")

    def close(self) -> None:
        """Stop the command's whole process group: `sh -c` may have children (nc, ssh -W)."""
        self.sock.close()
        if self.proc is not None and self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._stderr.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
