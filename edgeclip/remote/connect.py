"""SSH connections that fail instead of hanging.

paramiko on a plain socket waits forever when a link dies with data in flight. We open the TCP
socket ourselves with `TCP_USER_TIMEOUT` (unacknowledged data gives up after `link_timeout`) and
keepalives, and paramiko sends SSH keepalives so an idle link has data in flight too. Host keys and
key authentication are handled here, so no other module sees a half-trusted connection.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edgeclip.errors import RemoteError
from edgeclip.remote.hostkeys import check_host_key, load_known_hosts, preferred_key_types
from edgeclip.remote.hosts import Endpoint, HostSpec, load_ssh_config, resolve
from edgeclip.remote.proxy import ProxyProcess

DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
_TRANSIENT_ERRNOS = {errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET, errno.EPIPE}


class LinkError(RemoteError):
    """The network dropped or timed out; trying again later may work."""


@dataclass(frozen=True)
class SshOptions:
    """How to reach devices. Defaults follow OpenSSH: ~/.ssh/config, ~/.ssh/known_hosts, agent."""

    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    ssh_config: Path | None = field(default_factory=lambda: Path("~/.ssh/config").expanduser())
    identities: tuple[Path, ...] = ()
    trust_new_host: bool = False
    use_agent: bool = True
    connect_timeout: float = 10.0
    link_timeout: float = 8.0
    attempts: int = 4


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


def quote_command(argv: list[str]) -> str:
    """The only way a remote command line is built from values: every word quoted."""
    return " ".join(shlex.quote(str(word)) for word in argv)


class Connection:
    """One authenticated SSH session to a device (and the jump hosts it goes through)."""

    def __init__(self, transport: paramiko.Transport, endpoint: Endpoint, jumps: list[Connection],
                 proxy: ProxyProcess | None = None):
        self.transport = transport
        self.endpoint = endpoint
        self._jumps = jumps
        self._proxy = proxy
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Never raises: closing a connection whose link already died is normal here."""
        if self._sftp is not None:
            try:
                self._sftp.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass
            self._sftp = None
        self.transport.close()
        if self._proxy is not None:
            self._proxy.close()
        for jump in reversed(self._jumps):
            jump.close()

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def sftp(self, op_timeout: float = 30.0) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise self.lost(err, "opening SFTP") from err
            self._sftp.get_channel().settimeout(op_timeout)
        return self._sftp

    def run(self, command: str, *, stdin: bytes = b"", timeout: float | None = 300.0,
            on_stdout: Callable[[bytes], None] | None = None) -> CommandResult:
        """Run a shell command line (build it with `quote_command`); wait for its exit status.
        With `on_stdout`, stdout goes to it chunk by chunk as it arrives (the result holds none)."""
        try:
            channel = self.transport.open_session(timeout=10.0)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise self.lost(err, "starting a command") from err
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if channel.recv_ready():
                    chunk = channel.recv(1 << 16)
                    if on_stdout is None:
                        out += chunk
                    else:
                        on_stdout(chunk)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(1 << 16)
                elif channel.exit_status_ready():
                    break
                elif not self.alive:
                    raise LinkError(f"lost the connection to {self.endpoint} while running a command; check the link")
                elif deadline is not None and time.monotonic() > deadline:
                    raise RemoteError(f"command on {self.endpoint} did not finish within {timeout:.0f} s: {command[:80]}")
                else:
                    channel.status_event.wait(0.02)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status == -1 and not self.alive:
            raise LinkError(f"lost the connection to {self.endpoint} while running a command; check the link")
        return CommandResult(command, status, bytes(out), bytes(err))

    def run_script(self, script: str, args: tuple[str, ...] = (), **kwargs) -> CommandResult:
        """Run a constant POSIX script under `sh -c`, whatever the login shell; values go in as
        positional parameters ($1, $2, ...), never into the script text."""
        return self.run(quote_command(["sh", "-c", script, "edgeclip", *args]), **kwargs)

    def lost(self, err: BaseException, doing: str) -> LinkError:
        return LinkError(f"lost the connection to {self.endpoint} while {doing} ({str(err) or type(err).__name__}); check the link")


class Session:
    """A connection that is reopened after a link failure, for steps that can safely be repeated."""

    def __init__(self, spec: HostSpec | str, options: SshOptions):
        self.spec = HostSpec.parse(spec) if isinstance(spec, str) else spec
        self.options = options
        self.reconnects = 0
        self._conn: Connection | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def conn(self) -> Connection:
        if self._conn is None or not self._conn.alive:
            self.close()
            self._conn = connect_once(self.spec, self.options)
        return self._conn

    def retrying(self, action: Callable[[Connection], object], on_retry: Callable | None = None):
        """Run `action(conn)`, reconnecting with back-off when the link fails."""

        def note(attempt: int, err: LinkError) -> None:
            self.reconnects += 1
            self.close()
            if on_retry is not None:
                on_retry(attempt, err)

        return with_retries(lambda: action(self.conn), self.options.attempts, on_retry=note)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_socket(host: str, port: int, connect_timeout: float, link_timeout: float) -> socket.socket:
    """A TCP socket whose unacknowledged data and silent peers time out after `link_timeout`."""
    probe_every = max(1, int(link_timeout / 4))
    last_error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe_every)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe_every)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, int(link_timeout * 1000))
            sock.settimeout(connect_timeout)
            sock.connect(address)
            return sock
        except OSError as err:
            sock.close()
            last_error = err
    raise last_error or OSError(f"no address for {host}")


def connect(spec: HostSpec | str, options: SshOptions | None = None) -> Connection:
    """Connect with retries and back-off for transient network failures; never for key or auth problems."""
    options = options or SshOptions()
    spec = HostSpec.parse(spec) if isinstance(spec, str) else spec
    return with_retries(lambda: connect_once(spec, options), options.attempts)


def with_retries(action: Callable, attempts: int, first_delay: float = 0.5, on_retry: Callable | None = None):
    """Run `action`; on a `LinkError` wait 0.5 s, 1 s, 2 s, ... and try again, `attempts` times in all."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except LinkError as err:
            if attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, err)
            time.sleep(delay)
            delay *= 2


def connect_once(spec: HostSpec, options: SshOptions, via: Connection | None = None) -> Connection:
    endpoint = resolve(spec, load_ssh_config(options.ssh_config))
    if endpoint.proxy_command and via is not None:
        raise RemoteError(f"{endpoint} is a ProxyJump hop and has a ProxyCommand; reach it one way only in your ssh config")
    jumps: list[Connection] = []
    proxy = None
    try:
        for hop in endpoint.proxy_jump:
            jumps.append(connect_once(hop, options, via=jumps[-1] if jumps else via))
        if endpoint.proxy_command:
            proxy = ProxyProcess(endpoint.proxy_command, endpoint)
        transport = _open_transport(endpoint, options, jumps[-1] if jumps else via, proxy)
        try:
            _verify_host_key(transport, endpoint, options)
            _authenticate(transport, endpoint, options)
        except BaseException:
            transport.close()
            raise
        return Connection(transport, endpoint, jumps, proxy)
    except BaseException:
        if proxy is not None:
            proxy.close()
        for jump in reversed(jumps):
            jump.close()
        raise


def _open_transport(endpoint: Endpoint, options: SshOptions, via: Connection | None,
                    proxy: ProxyProcess | None = None) -> paramiko.Transport:
    where = f"{endpoint.hostname}:{endpoint.port}"
    try:
        if proxy is not None:
            sock = proxy.sock
        elif via is None:
            sock = open_socket(endpoint.hostname, endpoint.port, options.connect_timeout, options.link_timeout)
        else:
            sock = via.transport.open_channel(
                "direct-tcpip", (endpoint.hostname, endpoint.port), ("127.0.0.1", 0), timeout=options.connect_timeout
            )
    except ConnectionRefusedError as err:
        raise RemoteError(f"connection refused by {where}; is sshd running there and is the port right?") from err
    except socket.gaierror as err:
        raise RemoteError(f"cannot resolve {endpoint.hostname!r} ({err}); check the address or your ssh config") from err
    except TimeoutError as err:
        raise LinkError(f"no answer from {where} within {options.connect_timeout:.0f} s; is the board on and reachable?") from err
    except paramiko.ChannelException as err:
        raise RemoteError(f"jump host could not reach {where} ({err}); check ProxyJump and the address") from err
    except OSError as err:
        if err.errno in _TRANSIENT_ERRNOS:
            raise LinkError(f"cannot reach {where} ({os.strerror(err.errno)}); check the network") from err
        raise RemoteError(f"cannot connect to {where} ({err})") from err
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = options.connect_timeout
    preferred = preferred_key_types(load_known_hosts(options.known_hosts), endpoint.known_hosts_name)
    if preferred:
        security = transport.get_security_options()
        security.key_types = tuple(preferred) + tuple(k for k in security.key_types if k not in preferred)
    try:
        transport.start_client(timeout=options.connect_timeout)
    except (paramiko.SSHException, OSError, EOFError) as err:
        transport.close()
        if proxy is not None:
            _wait_for_exit(proxy)
            kind = LinkError if proxy.proc.poll() is None else RemoteError  # an exited proxy said why
            raise kind(f"SSH handshake with {where} through its ProxyCommand failed ({err}); {proxy.failure()}") from err
        raise LinkError(f"SSH handshake with {where} failed ({err}); is it an SSH server, and is the link stable?") from err
    transport.set_keepalive(max(1, int(options.link_timeout / 4)))
    return transport


def _wait_for_exit(proxy: ProxyProcess, seconds: float = 1.0) -> None:
    """A proxy that closed its end is usually exiting: give it a moment, so its status is known."""
    try:
        proxy.proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


def _verify_host_key(transport: paramiko.Transport, endpoint: Endpoint, options: SshOptions) -> None:
    check_host_key(endpoint.known_hosts_name, transport.get_remote_server_key(), options.known_hosts, options.trust_new_host)


def _authenticate(transport: paramiko.Transport, endpoint: Endpoint, options: SshOptions) -> None:
    tried: list[str] = []
    for label, key in _candidate_keys(endpoint, options, tried):
        try:
            transport.auth_publickey(endpoint.user, key)
            return
        except paramiko.AuthenticationException:
            tried.append(label)
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise LinkError(f"connection to {endpoint} dropped during authentication ({err})") from err
    offered = ", ".join(tried) or "none found"
    raise RemoteError(
        f"authentication failed for {endpoint}: keys tried: {offered}. Add your public key to "
        f"~{endpoint.user}/.ssh/authorized_keys on the board (ssh-copy-id), start ssh-agent, or pass --identity KEYFILE"
    )


def _candidate_keys(endpoint: Endpoint, options: SshOptions, notes: list[str]) -> Iterator[tuple[str, paramiko.PKey]]:
    """Explicit --identity first, then ssh_config IdentityFile, then the agent, then ~/.ssh defaults."""
    yield from _keys_from_files(list(options.identities) + list(endpoint.identity_files), notes)
    if endpoint.identities_only:
        return
    if options.use_agent:
        agent = paramiko.Agent()
        try:
            for key in agent.get_keys():
                yield f"agent {key.get_name()}", key
        finally:
            agent.close()
    yield from _keys_from_files([Path(f"~/.ssh/{name}").expanduser() for name in DEFAULT_KEYS], notes)


def _keys_from_files(paths: list[Path], notes: list[str]) -> Iterator[tuple[str, paramiko.PKey]]:
    for path in dict.fromkeys(paths):
        if not path.is_file():
            continue
        try:
            yield str(path), paramiko.PKey.from_path(str(path))
        except paramiko.PasswordRequiredException:
            notes.append(f"{path} (has a passphrase: load it into ssh-agent)")
        except (paramiko.SSHException, OSError, ValueError) as err:
            notes.append(f"{path} (unreadable: {err})")
