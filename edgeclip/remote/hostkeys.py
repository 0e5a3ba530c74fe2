"""Host-key policy: known keys are checked, an unknown key is refused unless the user asked to trust
it on first use (it is then recorded), and a changed key is always refused. Never silently accept:
a deploy pushes executables that run on the board.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from edgeclip.errors import RemoteError

if TYPE_CHECKING:
    import paramiko

TRUST_FLAG = "--trust-new-host"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's `SHA256:...` form, so it can be compared with `ssh-keygen -lf` on the board."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_known_hosts(path: Path) -> paramiko.HostKeys:
    import paramiko  # here, not at the top: the CLI names TRUST_FLAG without loading paramiko

    keys = paramiko.HostKeys()
    if path.is_file():
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException) as err:
            raise RemoteError(f"cannot read known_hosts {path} ({err}); fix or move that file") from err
    return keys


def preferred_key_types(known: paramiko.HostKeys, name: str) -> list[str]:
    """Key types already on record for `name`: asking the server for one of them means a changed
    key is detected instead of being hidden behind a different key type."""
    entry = known.lookup(name)
    return list(entry.keys()) if entry else []


def check_host_key(name: str, key: paramiko.PKey, known_hosts: Path, trust_new_host: bool) -> None:
    known = load_known_hosts(known_hosts)
    entry = known.lookup(name)
    offered = fingerprint(key)
    if entry:
        recorded = entry.get(key.get_name())
        if recorded is not None and recorded.asbytes() == key.asbytes():
            return
        on_record = ", ".join(f"{kind} {fingerprint(k)}" for kind, k in entry.items())
        raise RemoteError(
            f"HOST KEY CHANGED for {name}: it offered {key.get_name()} {offered} but {known_hosts} has {on_record}. "
            "This can be an attack; if the board was reinstalled, check the new fingerprint on its console "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and remove the old entry with "
            f"`ssh-keygen -f {known_hosts} -R '{name}'`"
        )
    if not trust_new_host:
        raise RemoteError(
            f"unknown host key for {name}: {key.get_name()} {offered}. Check it on the board "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run again with {TRUST_FLAG} to record it "
            f"in {known_hosts}"
        )
    record_host_key(name, key, known_hosts)


def record_host_key(name: str, key: paramiko.PKey, known_hosts: Path) -> None:
    """Append one line in OpenSSH's format; the file and its folder stay private."""
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(line)
