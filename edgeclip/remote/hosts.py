"""Where to connect: `[user@]addr[:port]` as typed, resolved through `~/.ssh/config` the way
OpenSSH does (Host aliases, HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump), so a
board that works with `ssh pi4` works with `edgeclip deploy --host pi4`.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edgeclip.errors import RemoteError

DEFAULT_PORT = 22
_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[^\s:@\[\]]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class HostSpec:
    """A host as the user typed it; any part left out is filled in from ssh_config."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        match = _SPEC.match(text.strip())
        if not match:
            raise RemoteError(f"cannot read host {text!r}; write it as [user@]address[:port] or an ssh_config alias")
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise RemoteError(f"port {port} in {text!r} is out of range; use 1-65535")
        return cls(host=match["v6"] or match["host"], user=match["user"], port=port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True)
class Endpoint:
    """A fully resolved destination: real address, port, user, keys to offer, jump hosts."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    identities_only: bool = False
    proxy_jump: tuple[HostSpec, ...] = field(default_factory=tuple)

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host under in known_hosts."""
        return self.hostname if self.port == DEFAULT_PORT else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.alias}" + (f" ({self.hostname}:{self.port})" if self.alias != self.hostname else f":{self.port}")


def load_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    if path is None or not Path(path).expanduser().is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(Path(path).expanduser()))
    except (OSError, paramiko.ConfigParseError) as err:
        raise RemoteError(f"cannot read ssh config {path} ({err}); fix it or pass --ssh-config /dev/null") from err


def resolve(spec: HostSpec, config: paramiko.SSHConfig) -> Endpoint:
    """Typed values win over ssh_config, which wins over OpenSSH's defaults."""
    entry = config.lookup(spec.host)
    try:
        port = spec.port or int(entry.get("port", DEFAULT_PORT))
    except ValueError as err:
        raise RemoteError(f"ssh config gives {spec.host!r} a port that is not a number ({err}); fix it") from err
    jump = entry.get("proxyjump")
    jumps = () if not jump or jump.lower() == "none" else tuple(HostSpec.parse(hop) for hop in jump.split(","))
    return Endpoint(
        alias=spec.host,
        hostname=entry.get("hostname", spec.host),
        port=port,
        user=spec.user or entry.get("user") or getpass.getuser(),
        identity_files=tuple(Path(os.path.expanduser(p)) for p in entry.get("identityfile", [])),
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        proxy_jump=jumps,
    )


def read_hosts_file(path) -> list[HostSpec]:
    """One host per line for a fleet; blank lines and `#` comments are ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise RemoteError(f"cannot read hosts file {path} ({err}); pass a file with one [user@]host[:port] per line") from err
    hosts = [HostSpec.parse(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]
    if not hosts:
        raise RemoteError(f"hosts file {path} lists no hosts; write one [user@]host[:port] per line")
    return hosts
