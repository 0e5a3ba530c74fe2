"""The device side: `edgeclip-agent serial --port PORT --dir DIR` receives bundles and installs them
into the one device layout (docs/bundle-format.md, "On the device"); `edgeclip-agent list` prints
what is installed.

Standard library, and pyserial when it is there (edgeclip.flash.link), so it runs on a bare board
as one file (`edgeclip agent --out edgeclip-agent.pyz`; every bundle carries it too). Data lands in
`DIR/.staging/<sha256>.part`, which survives a cut link so the next session resumes from its size;
keying it by the bundle's hash means a different bundle never continues a stale partial. Nothing
is installed until the whole file matches the announced sha256 and every member verifies.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import re
import shutil
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from edgeclip.errors import BundleError
from edgeclip.flash.install import install_bundle, is_current, link_target, list_installs
from edgeclip.flash.link import Link, SocketTransport, open_port
from edgeclip.flash.old_layout import migrate
from edgeclip.flash.space import extracted_bytes, needed_bytes, no_space, out_of_space
from edgeclip.flash.timing import IDLE_CLIENT_SECONDS, seconds_argument
from edgeclip.formats import cpu_features
from edgeclip.formats.bundle import read_manifest, sha256_file
from edgeclip.formats.layout import CURRENT, PREVIOUS, SSH_ROOT, STAGING, name_problem, partial_name
from edgeclip.formats.serial import MAX_PAYLOAD, OFFSET, VERSION, Damaged, Frame, FrameType

MAX_BUNDLE_BYTES = 1 << 40
DEFAULT_ROOT = Path.home() / SSH_ROOT  # where `edgeclip deploy` installs for this user: one tree for both
ROOT_HELP = f"install root (default ~/{SSH_ROOT}, the folder `edgeclip deploy` uses over SSH)"
IDLE_POLL_SECONDS = 1.0
REOPEN_SECONDS = 0.5
Reply = tuple[int, int, bytes]


def log(message: str) -> None:
    print(f"edgeclip-agent: {message}", file=sys.stderr, flush=True)


@dataclass
class Session:
    sha256: str
    size: int
    path: Path
    received: int
    refusal: tuple[str, str] | None
    fd: int | None
    budget: int  # bytes this session may still write under --max-bytes


class Agent:
    """The protocol state machine: one frame in, at most one reply out. Never raises on bad input."""

    def __init__(self, root, arch: str, max_bytes: int | None = None, cpu_features: list[str] | None = None):
        self.root = Path(root)
        self.arch = arch
        self.cpu_features = cpu_features  # reported in INFO; None: unknown (not checked by the host)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        _migrate(self.root)
        self.partials = self.root / STAGING
        self.partials.mkdir(exist_ok=True)
        self.session: Session | None = None
        self.last_done: tuple[str, bytes] | None = None

    def handle(self, event: Frame | Damaged) -> Reply | None:
        if isinstance(event, Damaged):
            return self._nak(event.seq)
        if event.version != VERSION:
            return _error(
                event.seq,
                "version",
                f"this agent speaks protocol version {VERSION} but the frame is version {event.version}; "
                "use the same edgeclip release on host and device",
            )
        handler = {
            FrameType.HELLO: self._hello,
            FrameType.DATA: self._data,
            FrameType.END: self._end,
            FrameType.ABORT: self._abort,
        }.get(event.type)
        if handler is None:
            return _error(event.seq, "protocol", f"frame type {event.type} is not one a host sends")
        return handler(event)

    def free_bytes(self) -> int:
        free = shutil.disk_usage(self.root).free
        if self.max_bytes is not None:
            free = min(free, max(0, self.max_bytes - _tree_bytes(self.root)))
        return free

    def close_session(self) -> None:
        if self.session is not None and self.session.fd is not None:
            os.close(self.session.fd)
        self.session = None

    def _hello(self, frame: Frame) -> Reply:
        try:
            request = json.loads(frame.payload)
            sha256, size, arch = str(request["sha256"]), int(request["size"]), str(request["arch"])
            name, manifest_sha256 = request["name"], str(request["manifest_sha256"])
        except (ValueError, KeyError, TypeError) as err:
            return _error(frame.seq, "protocol", f"HELLO is not the JSON object the protocol defines ({err})")
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not 0 < size <= MAX_BUNDLE_BYTES:
            return _error(frame.seq, "protocol", "HELLO needs a lowercase hex sha256 and a positive size")
        self.close_session()
        path = self.partials / partial_name(sha256)
        refusal, up_to_date = None, False
        problem = name_problem(name)
        installed = {CURRENT: None, PREVIOUS: None} if problem else _installed(self.root, name)
        if arch != self.arch:
            refusal = ("arch", f"this device is {self.arch} but the bundle is built for {arch}; build it for a {self.arch} target")
        elif problem:
            refusal = ("bundle", f"{problem}; rebuild the bundle with another name")
        else:
            up_to_date = is_current(self.root, name, sha256, manifest_sha256)
            for stale in self.partials.glob("*.part"):
                if stale != path or up_to_date:
                    stale.unlink()  # a partial never resumed (or not needed): give its space back
        if up_to_date:
            log(f"{name} {sha256[:12]} is already current; nothing to receive")
            return self._info(frame.seq, 0, self.free_bytes(), up_to_date=True, **installed)
        received = path.stat().st_size if path.exists() else 0
        if received > size:
            path.unlink()
            received = 0
        free = self.free_bytes()
        if refusal is None and free < needed_bytes(size, received):
            refusal = ("space", no_space(needed_bytes(size, received), free))
        fd = None if refusal else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.session = Session(sha256, size, path, received, refusal, fd, free)
        log(f"session for {sha256[:12]} ({size} bytes), resuming at {received}" + (f", refused: {refusal[0]}" if refusal else ""))
        return self._info(frame.seq, received, free, up_to_date=False, **installed)

    def _info(self, seq: int, offset: int, free: int, **state) -> Reply:
        info = {"version": VERSION, "arch": self.arch, "cpu_features": self.cpu_features, "free": free,
                "offset": offset, "max_payload": MAX_PAYLOAD - OFFSET.size, **state}
        return FrameType.INFO, seq, json.dumps(info).encode()

    def _data(self, frame: Frame) -> Reply:
        session = self.session
        if session is None:
            return _error(frame.seq, "protocol", "DATA before HELLO; start a new session")
        if session.refusal:
            return _error(frame.seq, *session.refusal)
        if len(frame.payload) < OFFSET.size:
            return self._nak(frame.seq)
        (offset,) = OFFSET.unpack_from(frame.payload)
        data = frame.payload[OFFSET.size :]
        if offset == session.received and data:
            if offset + len(data) > session.size:
                return _error(frame.seq, "protocol", f"DATA goes past the announced size of {session.size} bytes")
            try:
                self._append(session, data)
            except OSError as err:
                return self._write_failed(frame.seq, err)
        # Out of place (a duplicate, or ahead of a gap): the ACK's count tells the host where to go on.
        return FrameType.ACK, frame.seq, OFFSET.pack(session.received)

    def _append(self, session: Session, data: bytes) -> None:
        if self.max_bytes is not None and len(data) > session.budget:
            raise OSError(errno.ENOSPC, f"--max-bytes {self.max_bytes} reached")
        view = memoryview(data)
        while view:
            view = view[os.write(session.fd, view) :]
        session.received += len(data)
        session.budget -= len(data)

    def _end(self, frame: Frame) -> Reply:
        try:
            sha256 = str(json.loads(frame.payload)["sha256"])
        except (ValueError, KeyError, TypeError) as err:
            return _error(frame.seq, "protocol", f"END is not the JSON object the protocol defines ({err})")
        if self.last_done and self.last_done[0] == sha256 and self.session is None:
            return FrameType.DONE, frame.seq, self.last_done[1]  # our DONE was lost; say it again
        session = self.session
        if session is None or session.sha256 != sha256:
            return _error(frame.seq, "protocol", "END for a bundle this session did not announce")
        if session.refusal:
            return _error(frame.seq, *session.refusal)
        if session.received != session.size:
            return _error(frame.seq, "short", f"only {session.received} of {session.size} bytes arrived; flash again to resume")
        try:
            os.fsync(session.fd)  # where delayed allocation reports a full disk
        except OSError as err:
            return self._write_failed(frame.seq, err)
        if sha256_file(session.path) != sha256:
            self._drop_partial()
            return _error(frame.seq, "hash", "the received bundle does not match its sha256 and was deleted; flash again")
        try:
            result = install_bundle(self.root, session.path, sha256, self.arch)
        except (BundleError, OSError) as err:
            need = self._install_need(session) if out_of_space(err) else None
            self._drop_partial()  # install_bundle removed what it had extracted
            if need is not None:
                return _error(frame.seq, "space", no_space(need, self.free_bytes()))
            return _error(frame.seq, "bundle", f"the bundle was not installed: {err}")
        self._drop_partial()
        payload = json.dumps(result).encode()
        self.last_done = (sha256, payload)
        log(f"installed {result['installed']}")
        return FrameType.DONE, frame.seq, payload

    def _write_failed(self, seq: int, err: OSError) -> Reply:
        """A failed write into the partial: it is removed, and a full disk says how much is missing."""
        size = self.session.size
        self._drop_partial()
        if out_of_space(err):
            return _error(seq, "space", no_space(needed_bytes(size), self.free_bytes()))
        return _error(seq, "io", f"writing the bundle failed ({err}); the partial file was removed")

    def _install_need(self, session: Session) -> int:
        """The received bundle plus its members as extracted here, in whole filesystem blocks."""
        try:
            return session.size + extracted_bytes(read_manifest(session.path), os.statvfs(self.root).f_frsize)
        except (BundleError, OSError):
            return needed_bytes(session.size)

    def _abort(self, frame: Frame) -> None:
        self.close_session()  # the partial stays for a later resume

    def _nak(self, seq: int) -> Reply:
        received = self.session.received if self.session else 0
        return FrameType.NAK, seq, OFFSET.pack(received)

    def _drop_partial(self) -> None:
        path = self.session.path
        self.close_session()
        path.unlink(missing_ok=True)


def _error(seq: int, code: str, message: str) -> Reply:
    log(f"refused ({code}): {message}")
    return FrameType.ERROR, seq, json.dumps({"code": code, "message": message}).encode()


def _migrate(root: Path) -> None:
    for move in migrate(root):
        log(f"moved into the one layout: {move}")


def _installed(root: Path, name: str) -> dict:
    """INFO's view of what the device runs for `name`, as paths under ROOT (like DONE's)."""
    links = {key: link_target(root / name, key) for key in (CURRENT, PREVIOUS)}
    return {key: f"{name}/{target}" if target else None for key, target in links.items()}


def _tree_bytes(root: Path) -> int:
    return sum(path.lstat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def serve(agent: Agent, link: Link, idle_seconds: float | None = None) -> None:
    """Answer frames until the link drops (ConnectionError) or, with `idle_seconds`, until the peer
    sent no frame for that long (bytes that never make a frame do not count); a bug in one reply
    never ends the agent."""
    quiet_since = time.monotonic()
    while True:
        event = link.receive(IDLE_POLL_SECONDS)
        if not isinstance(event, Frame):
            if idle_seconds is not None and time.monotonic() - quiet_since > idle_seconds:
                log(f"no frame for {idle_seconds:g} s; dropping the client so the next one is served")
                return
            if event is None:
                continue
        try:
            reply = agent.handle(event)
        except Exception:  # a device daemon logs and keeps serving
            log("internal error, session dropped:\n" + traceback.format_exc())
            agent.close_session()
            reply = _error(event.seq, "internal", "the agent hit an internal error; see its log and flash again")
        if reply is not None:
            link.send(*reply)
        if isinstance(event, Frame):
            quiet_since = time.monotonic()  # after the reply: a long install is not the peer's silence


def serve_serial(agent: Agent, url: str, baud: int, rtscts: bool) -> None:
    while True:
        try:
            link = Link(open_port(url, baud, rtscts))
        except OSError as err:  # a port that comes and goes (USB gadget, adapter); ValueError never heals
            log(f"cannot open {url} ({err}); retrying")
            time.sleep(REOPEN_SECONDS)
            continue
        log(f"serving on {url} at {baud} baud, arch {agent.arch}")
        try:
            serve(agent, link)
        except ConnectionError as err:
            log(f"link lost ({err}); reopening")
        finally:
            agent.close_session()
            link.close()
        time.sleep(REOPEN_SECONDS)


def serve_tcp(agent: Agent, host: str, port: int, idle_seconds: float = IDLE_CLIENT_SECONDS) -> None:
    """One connection at a time, for `edgeclip flash --port socket://HOST:PORT`; one that sends no
    frame for `idle_seconds` is closed, so an idle client cannot lock every flash out."""
    with socket.create_server((host, port)) as server:
        bound_host, bound_port = server.getsockname()[:2]
        print(f"listening on {bound_host}:{bound_port}", flush=True)
        while True:
            conn, peer = server.accept()
            log(f"connection from {peer[0]}:{peer[1]}, arch {agent.arch}")
            link = Link(SocketTransport(conn))
            try:
                serve(agent, link, idle_seconds)
            except ConnectionError as err:
                log(f"connection ended ({err})")
            finally:
                agent.close_session()
                link.close()


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host or "127.0.0.1", int(port)


def board_features(arch: str) -> list[str] | None:
    """This CPU's features in the runner's names, what HELLO's reply reports so the host refuses a
    bundle the board cannot run before sending it: the auxiliary vector's hwcaps on aarch64 (what
    the runner reads with getauxval), the cpuinfo flags on x86-64. None when reporting another
    arch than this machine's, or when they cannot be read."""
    if arch != platform.machine() or arch not in cpu_features.FEATURES:
        return None
    try:
        if arch == "aarch64":
            data = Path("/proc/self/auxv").read_bytes()[: 1 << 16]
            words = struct.unpack(f"={len(data) // 8}Q", data[: len(data) // 8 * 8])
            return cpu_features.from_auxv(list(words))
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        return cpu_features.from_flags(arch, flags.split(":", 1)[1])
    except (OSError, StopIteration, struct.error):
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeclip-agent", description="Receive edgeclip bundles on a device.")
    modes = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    p = modes.add_parser("serial", help="receive bundles over a serial line (or one TCP connection at a time)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device path or pyserial URL")
    where.add_argument("--listen", type=_host_port, metavar="HOST:PORT", help="accept TCP connections instead")
    p.add_argument("--dir", type=Path, default=DEFAULT_ROOT, help=ROOT_HELP)
    p.add_argument("--baud", type=int, default=921600)
    p.add_argument("--rtscts", action="store_true", help="hardware flow control")
    p.add_argument("--arch", default=platform.machine(), help="architecture to report (default: uname -m)")
    p.add_argument("--cpu-features", metavar="LIST", help="CPU features to report, comma-separated (default: this "
                   "CPU's, read as the runner reads them; only with the machine's own --arch)")
    p.add_argument("--max-bytes", type=int, default=None, help="act as if DIR may hold at most this many bytes")
    p.add_argument("--idle-timeout", type=seconds_argument, default=IDLE_CLIENT_SECONDS, metavar="S",
                   help=f"with --listen, close a connection that sends no frame for S seconds (default {IDLE_CLIENT_SECONDS:g})")
    listing = modes.add_parser("list", help="print what DIR holds as JSON: per name its current and previous version")
    listing.add_argument("--dir", type=Path, default=DEFAULT_ROOT, help=ROOT_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.mode == "list":
            _migrate(args.dir)
            print(json.dumps(list_installs(args.dir), indent=2, sort_keys=True))
            return 0
        features = (sorted(cpu_features.parse_list(args.cpu_features)) if args.cpu_features is not None
                    else board_features(args.arch))
        agent = Agent(args.dir, args.arch, args.max_bytes, features)
        if args.listen:
            serve_tcp(agent, *args.listen, args.idle_timeout)
        else:
            serve_serial(agent, args.port, args.baud, args.rtscts)
    except KeyboardInterrupt:
        return 0
    except ValueError as err:  # the port can never work as asked (open_port says why)
        print(f"edgeclip-agent: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"edgeclip-agent: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
