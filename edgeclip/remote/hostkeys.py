"""Host-key policy: known keys are checked, an unknown key is refused unless the user asked to trust
it on first use (it is then recorded), and a changed or `@revoked` key is always refused. Never
silently accept: a deploy pushes executables that run on the board.

known_hosts is read here, in OpenSSH's format (plain, `|1|` hashed and wildcard host patterns,
`@revoked` and `@cert-authority` markers), and every problem in it is one RemoteError naming the
file and line. edgeclip checks plain host keys, not host certificates: `@cert-authority` lines are
read but vouch for nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeclip.errors import RemoteError

if TYPE_CHECKING:
    import paramiko

TRUST_FLAG = "--trust-new-host"
MARKERS = ("@revoked", "@cert-authority")
MAX_KNOWN_HOSTS_BYTES = 64 << 20


@dataclass(frozen=True)
class KnownKey:
    """One key line of known_hosts."""

    line: int
    marker: str | None  # "@revoked", "@cert-authority" or None
    patterns: tuple[str, ...]
    key: paramiko.PKey

    def matches(self, name: str) -> bool:
        """OpenSSH's rule: some pattern matches `name` and no negated (`!`) one does."""
        hits = [(pattern.startswith("!"), _pattern_matches(pattern.lstrip("!"), name)) for pattern in self.patterns]
        return any(hit for _, hit in hits) and not any(negated and hit for negated, hit in hits)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's `SHA256:...` form, so it can be compared with `ssh-keygen -lf` on the board."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_known_hosts(path: Path) -> list[KnownKey]:
    """Every key line of `path` (none when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise RemoteError(f"known_hosts {path} is a directory, not a file; pass the file with --known-hosts")
    try:
        if path.stat().st_size > MAX_KNOWN_HOSTS_BYTES:
            raise RemoteError(f"known_hosts {path} is over {MAX_KNOWN_HOSTS_BYTES >> 20} MB; is it the right file?")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RemoteError(f"cannot read known_hosts {path} ({err}); fix its permissions or move it away") from err
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            entry = _parse_line(line, number, path)
            if entry is not None:
                keys.append(entry)
    return keys


def _parse_line(line: str, number: int, path: Path) -> KnownKey | None:
    """None for a key type paramiko cannot check (OpenSSH skips those too)."""
    import paramiko  # here, not at the top: the CLI names TRUST_FLAG without loading paramiko

    where = f"{path}, line {number}"
    fields = line.split()
    marker = fields.pop(0) if fields[0].startswith("@") else None
    if marker is not None and marker not in MARKERS:
        raise RemoteError(f"{where}: unknown marker {marker[:40]!r} (OpenSSH knows {' and '.join(MARKERS)}); fix or delete that line")
    if len(fields) < 3:
        raise RemoteError(f"{where}: wanted HOSTS KEYTYPE BASE64KEY; fix or delete that line")
    patterns, key_type, blob = fields[0].split(","), fields[1], fields[2]
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RemoteError(f"{where}: the key is not valid base64 ({err}); fix or delete that line") from err
    for pattern in patterns:
        if pattern.startswith("|1|"):
            _hashed(pattern, where)  # refuse a damaged hashed name now, not only when it is looked up
    try:
        key = paramiko.PKey.from_type_string(key_type, data)
    except paramiko.UnknownKeyType:
        return None
    except (paramiko.SSHException, ValueError, TypeError, IndexError) as err:
        raise RemoteError(f"{where}: the {key_type[:40]} key does not decode ({err or type(err).__name__}); fix or delete that line") from err
    return KnownKey(number, marker, tuple(patterns), key)


def _hashed(pattern: str, where: str) -> tuple[bytes, bytes]:
    parts = pattern.split("|")
    try:
        if len(parts) != 4:
            raise ValueError("wanted |1|SALT|HASH")
        return base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError) as err:
        raise RemoteError(f"{where}: the hashed host name is damaged ({err}); fix or delete that line") from err


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        salt, digest = _hashed(pattern, "known_hosts")
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    wildcard = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")  # OpenSSH has only * and ?
    return re.fullmatch(wildcard, name, re.IGNORECASE) is not None


def preferred_key_types(known: list[KnownKey], name: str) -> list[str]:
    """Key types already on record for `name`: asking the server for one of them means a changed
    key is detected instead of being hidden behind a different key type."""
    return list(dict.fromkeys(k.key.get_name() for k in known if k.marker is None and k.matches(name)))


def check_host_key(name: str, key: paramiko.PKey, known_hosts: Path, trust_new_host: bool) -> None:
    known = load_known_hosts(known_hosts)
    offered = fingerprint(key)
    for entry in known:
        if entry.marker == "@revoked" and entry.key.asbytes() == key.asbytes():
            raise RemoteError(
                f"HOST KEY REVOKED: {name} offered {key.get_name()} {offered}, which {known_hosts} line {entry.line} "
                "marks @revoked; refusing it. Give the board a new host key, or remove that line if the revocation is wrong"
            )
    on_record = [entry for entry in known if entry.marker is None and entry.matches(name)]
    if any(entry.key.asbytes() == key.asbytes() for entry in on_record):
        return
    if on_record:
        recorded = ", ".join(f"{e.key.get_name()} {fingerprint(e.key)} (line {e.line})" for e in on_record)
        raise RemoteError(
            f"HOST KEY CHANGED for {name}: it offered {key.get_name()} {offered} but {known_hosts} has {recorded}. "
            "This can be an attack; if the board was reinstalled, check the new fingerprint on its console "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and remove the old entry with "
            f"`ssh-keygen -f {known_hosts} -R '{name}'`"
        )
    authorities = [str(e.line) for e in known if e.marker == "@cert-authority" and e.matches(name)]
    note = (f" ({known_hosts} line {', '.join(authorities)} names a @cert-authority for it, but edgeclip checks "
            "host keys, not certificates)") if authorities else ""
    if not trust_new_host:
        raise RemoteError(
            f"unknown host key for {name}: {key.get_name()} {offered}{note}. Check it on the board "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run again with {TRUST_FLAG} to record it "
            f"in {known_hosts}"
        )
    record_host_key(name, key, known_hosts)


def record_host_key(name: str, key: paramiko.PKey, known_hosts: Path) -> None:
    """Append one line in OpenSSH's format; the file and its folder stay private."""
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    try:
        fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(line)
    except OSError as err:
        raise RemoteError(f"cannot record the host key in {known_hosts} ({err}); fix its permissions") from err
