"""The serial-flash test rig, shared by the flash test modules: a real `edgeclip-agent` process on
one pseudo-terminal, the host on another, and tests/flash_relay.py joining them like a cable.

host (pyserial on pty A) <-> tests/flash_relay.py (paced at BAUD, may corrupt frames) <-> agent (pty B)

Import the fixtures into a test module to use them (`rigs = flash_rig.rigs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import subprocess
import sys
import time
import tty
from argparse import ArgumentParser
from pathlib import Path

import pytest

from edgeclip.cli.flash import add_flash_command
from edgeclip.flash.host import flash
from edgeclip.flash.link import Link
from edgeclip.formats.bundle import write_bundle
from edgeclip.formats.layout import manifest_sha256
from edgeclip.formats.serial import OFFSET, Damaged, FrameType, encode

BAUD = 3_000_000
LINE_BYTES_PER_SECOND = BAUD / 10
RELAY = Path(__file__).with_name("flash_relay.py")
ROOT = Path(__file__).resolve().parents[1]
AGENT = (sys.executable, "-m", "edgeclip.flash.agent")  # the installed agent; a test may run the zipapp instead


def make_bundle(path: Path, name: str, arch: str, sizes: dict[str, int]) -> tuple[Path, dict[str, bytes]]:
    files = {member: os.urandom(size) for member, size in sizes.items()}
    files["bin/run"] = b"#!/bin/sh\necho run\n"
    variant = {"name": "ternary", "precision": "ternary", "kernel_family": "none", "device": "cpu", "cpu_features": [],
               "towers": {"model": {"path": next(iter(sizes))}}}
    manifest = {"name": name, "target": {"name": "test", "arch": arch, "cpu_features": []}, "runner": "bin/run",
                "variants": [variant]}
    write_bundle(path, manifest, files, executables=frozenset({"bin/run"}))
    return path, files


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """About 2.1 MB: a multi-megabyte bundle that still crosses a 3 Mbaud line in ~7 s."""
    return make_bundle(tmp_path_factory.mktemp("b") / "big.edgeclip", "bigmodel", "x86_64", {"model.so": 1_500_000, "weights.bin": 600_000})


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("s") / "small.edgeclip", "smallmodel", "x86_64", {"weights.bin": 150_000})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Rig:
    """Two ptys, an agent process on one, and (when started) a relay process joining them."""

    def __init__(self, tmp_path: Path, agent_args=(), device_dir: Path | None = None, agent=AGENT):
        self.tmp = tmp_path
        self.host_master, self.host_slave, self.host_port = open_pty()
        self.dev_master, self.dev_slave, dev_port = open_pty()
        self.dir = device_dir or tmp_path / "device"
        self.agent_log = tmp_path / "agent.log"
        self.relay_log = tmp_path / "relay.log"
        self.relay = None
        with open(self.agent_log, "w") as log:
            self.agent = subprocess.Popen(
                [*agent, "serial", "--port", dev_port, "--dir", str(self.dir), "--baud", str(BAUD), *agent_args],
                stderr=log, cwd=tmp_path,
            )
        wait_for(lambda: "serving on" in self.agent_log.read_text(), 20, "the agent to open its port")

    def start_relay(self, corrupt: float = 0.0, seed: int = 1) -> None:
        self.relay = subprocess.Popen(
            [sys.executable, str(RELAY), str(self.host_master), str(self.dev_master), "--baud", str(BAUD),
             "--corrupt", str(corrupt), "--seed", str(seed), "--log", str(self.relay_log)],
            pass_fds=(self.host_master, self.dev_master), cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        assert self.relay.stdout.readline() == "ready\n"

    def cut(self) -> None:
        self.relay.kill()
        self.relay.wait()
        self.relay = None

    def flash(self, bundle: Path, **options):
        options = {"baud": BAUD, "timeout": 1.0, "retries": 4, "progress": False, **options}
        return flash(bundle, self.host_port, **options)

    def relayed(self, direction: str = "h2d") -> list[tuple[int, int]]:
        """(frame type, corrupted) for every frame the relay forwarded in `direction`."""
        if not self.relay_log.exists():
            return []
        rows = [line.split() for line in self.relay_log.read_text().splitlines()]
        return [(int(kind), int(bad)) for lane, kind, _, bad in rows if lane == direction]

    def assert_agent_alive(self) -> None:
        assert self.agent.poll() is None, f"agent died:\n{self.agent_log.read_text()}"

    def close(self) -> None:
        if self.relay is not None:
            self.cut()
        self.agent.terminate()
        self.agent.wait(10)
        for fd in (self.host_master, self.host_slave, self.dev_master, self.dev_slave):
            os.close(fd)


@pytest.fixture
def rigs(tmp_path):
    made = []

    def make(**kwargs) -> Rig:
        made.append(Rig(tmp_path, **kwargs))
        return made[-1]

    yield make
    for rig in made:
        rig.close()


def linked_version(root: Path, name: str, which: str = "current") -> str | None:
    """The version (sha12) that `ROOT/<name>/<which>` names, or None."""
    path = root / name / which
    return Path(os.readlink(path)).name if path.is_symlink() else None


def assert_installed(root: Path, bundle: Path, files: dict[str, bytes], name: str) -> Path:
    """`bundle` is `name`'s current version in the one layout, whole, with its manifest kept."""
    current = root / name / "current"
    assert current.is_symlink()
    assert os.readlink(current) == f"versions/{sha256(bundle)[:12]}"
    installed = current.resolve()
    for member, data in files.items():
        assert (installed / member).read_bytes() == data, member
    assert hashlib.sha256((installed / "manifest.json").read_bytes()).hexdigest() == manifest_sha256(bundle)
    assert os.access(installed / "bin/run", os.X_OK)
    assert not list((root / ".staging").iterdir()), "the received bundle should not linger after install"
    return installed


@contextlib.contextmanager
def listening_agent(device: Path, agent=AGENT, cwd: Path | None = None, args=()):
    """An agent serving `--listen 127.0.0.1:0` into `device`; yields its socket:// URL."""
    with agent_server(device, agent, cwd, args) as (url, _):
        yield url


@contextlib.contextmanager
def agent_server(device: Path, agent=AGENT, cwd: Path | None = None, args=()):
    """Like listening_agent, with more agent `args`; yields (socket:// URL, the agent process)."""
    proc = subprocess.Popen([*agent, "serial", "--listen", "127.0.0.1:0", "--dir", str(device), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd or device.parent)
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        yield f"socket://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(10)


class FdTransport:
    """The test's raw end of the agent's pty: a hostile host that writes whatever bytes it likes."""

    def __init__(self, fd: int):
        self.fd = fd

    def read_some(self) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], 0.02)
        return os.read(self.fd, 1 << 16) if ready else b""

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        pass


def ask(link: Link, raw: bytes, seq: int):
    """Write raw bytes; return the agent's answer to `seq` as (type, decoded payload)."""
    link.transport.write(raw)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        event = link.receive(0.5)
        if event is not None and not isinstance(event, Damaged) and event.seq == seq:
            if event.type in (FrameType.ACK, FrameType.NAK):
                return event.type, OFFSET.unpack(event.payload)[0]
            return event.type, json.loads(event.payload)
    raise AssertionError(f"no answer to seq {seq}")


def hello(seq: int, sha: str, size: int, arch: str = "x86_64", name: str = "x", manifest: str = "0" * 64) -> bytes:
    request = {"sha256": sha, "size": size, "name": name, "arch": arch, "manifest_sha256": manifest}
    return encode(FrameType.HELLO, seq, json.dumps(request).encode())


def data(seq: int, offset: int, chunk: bytes) -> bytes:
    return encode(FrameType.DATA, seq, OFFSET.pack(offset) + chunk)


def parse_flash_args(argv: list[str]):
    parser = ArgumentParser(prog="edgeclip")
    add_flash_command(parser.add_subparsers(dest="verb"))
    return parser.parse_args(["flash", *argv])


