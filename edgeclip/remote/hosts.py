"""Where to connect: `[user@]addr[:port]` as typed, resolved through `~/.ssh/config` the way
OpenSSH does (Host aliases, HostName, User, Port, IdentityFile, IdentitiesOnly, ProxyJump,
ProxyCommand), so a board that works with `ssh pi4` works with `edgeclip deploy --host pi4`.

A typed host is untrusted: it must pass edgeclip.remote.names before the config is looked at, and
`Match exec` blocks never apply (paramiko would run their command through a shell with the name).
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edgeclip.errors import RemoteError
from edgeclip.remote.names import check_host, check_user, is_ipv6, shown

DEFAULT_PORT = 22
_SPEC = re.compile(r"^(?:(?P<user>[^@]*)@)?(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:@\[\]]*))(?::(?P<port>\d{1,5}))?$")
_KEYWORD = re.compile(r"\s*(\w+)(?:\s*=\s*|\s+)(.*)")
NEVER_MATCHES = "Match host !*"  # what a `Match exec` line becomes: a block that applies to no host


@dataclass(frozen=True)
class HostSpec:
    """A host as the user typed it; any part left out is filled in from ssh_config."""

    host: str
    user: str | None = None
    port: int | None = None

    def __post_init__(self):
        """Every HostSpec is valid, however it was made: nothing else needs to check again."""
        check_host(self.host, "host")
        if self.user is not None:
            check_user(self.user, f"host {self.host}")
        if self.port is not None and not 0 < self.port < 65536:
            raise RemoteError(f"port {self.port} of host {shown(self.host)} is out of range; use 1-65535")

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        text = text.strip()
        user, _, rest = text.rpartition("@") if "@" in text else (None, "", text)
        if rest.count(":") > 1 and "[" not in rest and is_ipv6(rest):  # a bare IPv6 address has no port
            return cls(host=rest, user=user)
        match = _SPEC.match(text)
        if not match or (match["v6"] is not None and not is_ipv6(match["v6"])):
            raise RemoteError(f"cannot read host {shown(text)}; write it as [user@]address[:port] or an ssh_config alias")
        port = int(match["port"]) if match["port"] else None
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
    proxy_command: str | None = None  # as written in ssh_config, %-tokens not yet filled in

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host under in known_hosts."""
        return self.hostname if self.port == DEFAULT_PORT else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.alias}" + (f" ({self.hostname}:{self.port})" if self.alias != self.hostname else f":{self.port}")


class _Config(paramiko.SSHConfig):
    """ProxyCommand's %h, %p, %r are filled in by edgeclip (edgeclip.remote.proxy) from the validated,
    typed-over-configured values; paramiko would use the configured ones."""

    TOKENS_BY_CONFIG_KEY = {**paramiko.SSHConfig.TOKENS_BY_CONFIG_KEY, "proxycommand": []}


def load_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    if path is None or not Path(path).expanduser().is_file():
        return _Config()
    try:
        text = Path(path).expanduser().read_text()
        return _Config.from_text(without_match_exec(text))
    except (OSError, UnicodeDecodeError, ValueError, paramiko.ConfigParseError) as err:
        raise RemoteError(f"cannot read ssh config {path} ({err}); fix it or pass --ssh-config /dev/null") from err


def without_match_exec(text: str) -> str:
    """The config with every `Match` line that names `exec` (or cannot be split into words)
    replaced by one that matches no host, so a lookup never runs a command."""
    lines = []
    for line in text.splitlines():
        found = _KEYWORD.match(line)
        if found and found[1].lower() == "match":
            try:
                words = [word.lstrip("!").lower() for word in shlex.split(found[2])]
            except ValueError:
                words = ["exec"]
            if "exec" in words:
                line = NEVER_MATCHES
        lines.append(line)
    return "\n".join(lines) + "\n"


def resolve(spec: HostSpec, config: paramiko.SSHConfig) -> Endpoint:
    """Typed values win over ssh_config, which wins over OpenSSH's defaults. What the config gives
    is checked too: its HostName and User may reach a ProxyCommand's shell."""
    entry = config.lookup(spec.host)
    where = f"ssh config for {spec.host!r}"
    try:
        port = spec.port or int(entry.get("port", DEFAULT_PORT))
    except ValueError as err:
        raise RemoteError(f"{where} gives a port that is not a number ({err}); fix it") from err
    if not 0 < port < 65536:
        raise RemoteError(f"{where} gives port {port}; use 1-65535")
    jump = entry.get("proxyjump")
    jumps = () if not jump or jump.lower() == "none" else tuple(HostSpec.parse(hop) for hop in jump.split(","))
    command = entry.get("proxycommand") or None
    if jumps and command:
        raise RemoteError(f"{where} sets both ProxyJump and ProxyCommand; keep one of them")
    return Endpoint(
        alias=spec.host,
        hostname=check_host(entry.get("hostname", spec.host), f"{where}, HostName"),
        port=port,
        user=check_user(spec.user or entry.get("user") or getpass.getuser(), f"{where}, User"),
        identity_files=tuple(Path(os.path.expanduser(p)) for p in entry.get("identityfile", [])),
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        proxy_jump=jumps,
        proxy_command=command,
    )


def read_hosts_file(path) -> list[HostSpec]:
    """One host per line for a fleet; blank lines and `#` comments are ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RemoteError(f"cannot read hosts file {path} ({err}); pass a file with one [user@]host[:port] per line") from err
    hosts = []
    for number, line in enumerate(lines, 1):
        if text := line.split("#", 1)[0].strip():
            try:
                hosts.append(HostSpec.parse(text))
            except RemoteError as err:
                raise RemoteError(f"hosts file {path}, line {number}: {err}") from err
    if not hosts:
        raise RemoteError(f"hosts file {path} lists no hosts; write one [user@]host[:port] per line")
    return hosts
