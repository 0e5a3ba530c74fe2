"""The grammar a host or user name must match before it reaches ssh_config, a socket or a
ProxyCommand: a host name from `--host` or a `--hosts` file is untrusted text, and paramiko's
config lookup (and a ProxyCommand) hands names to a shell.

Hosts: an RFC 1123 name, an IPv4 address, an IPv6 address (bare or in brackets, with an optional
zone), or an ssh_config alias drawn from the same safe characters plus `_`. Users: POSIX portable
names. Nothing here can start with `-` (an option to `nc` or `ssh`) or hold a shell metacharacter.
"""

from __future__ import annotations

import ipaddress
import re

from edgeclip.errors import RemoteError

MAX_HOST_CHARS = 253
MAX_USER_CHARS = 32
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ALIAS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
HOST_GRAMMAR = "a host name (letters, digits, '-', '.'), an IPv4 or IPv6 address, or an ssh_config alias (also '_')"
USER_GRAMMAR = "letters, digits, '.', '_' and '-', not starting with '-'"


def is_ipv6(text: str) -> bool:
    address, _, zone = text.partition("%")
    if "%" in text and not _ZONE.fullmatch(zone):
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def shown(text: object, limit: int = 64) -> str:
    """`text` quoted for a message, cut short: hostile input can be megabytes long."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 4] + "...'"


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_dns_name(text: str) -> bool:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, 253 characters at most."""
    return 0 < len(text) <= MAX_HOST_CHARS and all(_LABEL.fullmatch(label) for label in text.split("."))


def host_problem(text: str) -> str | None:
    """Why `text` cannot be a host here, or None. IPv4 addresses are RFC 1123 names already."""
    if not isinstance(text, str) or not text:
        return "the host name is empty"
    if re.fullmatch(r"[0-9.]+", text):  # only an IPv4 dotted quad, not `127.1` or `999.1.1.1`
        return None if _is_ipv4(text) else f"{shown(text)} is not an IPv4 address (write four numbers 0-255)"
    if is_ipv6(text) or is_dns_name(text):
        return None
    if len(text) <= MAX_HOST_CHARS and _ALIAS.fullmatch(text) and ".." not in text and not text.endswith("."):
        return None  # an alias such as `lab_pi4`: only looked up, then replaced by its HostName
    return f"{shown(text)} is not {HOST_GRAMMAR}"


def user_problem(text: str) -> str | None:
    if not isinstance(text, str) or not text:
        return "the user name is empty"
    if len(text) > MAX_USER_CHARS or not _USER.fullmatch(text):
        return f"user {shown(text)} is not a portable user name ({USER_GRAMMAR}, at most {MAX_USER_CHARS})"
    return None


def check_host(text: str, where: str) -> str:
    """`text` if it is a valid host, else a RemoteError saying where it came from."""
    if problem := host_problem(text):
        raise RemoteError(f"{where}: {problem}; write [user@]address[:port] or an ssh_config alias")
    return text


def check_user(text: str, where: str) -> str:
    if problem := user_problem(text):
        raise RemoteError(f"{where}: {problem}; use the board's login name")
    return text
