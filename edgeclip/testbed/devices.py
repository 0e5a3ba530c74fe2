"""The two kinds of emulated board (for the tests and the demo), as context managers that always tear down."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

from edgeclip.testbed import netns, rootfs, sshd

_tags = itertools.count()


@contextlib.contextmanager
def loopback_device(workdir: Path, **kwargs) -> Iterator[sshd.Device]:
    """A native (x86_64) board on 127.0.0.1: fastest, for most tests."""
    device = sshd.start_device(workdir, **kwargs)
    try:
        yield device
    finally:
        device.stop()


@contextlib.contextmanager
def arm64_device(workdir: Path, cpu: str | None = None, **kwargs) -> Iterator[tuple[sshd.Device, netns.Namespace]]:
    """An aarch64 board: Debian arm64 userland under qemu-user, chrooted by sshd, in its own
    network namespace reached over a veth link. `cpu`: the CPU qemu emulates (e.g. cortex-a72 for a
    Pi 4, whose lack of dot product the board then reports), through QEMU_CPU in every session:
    the binfmt-registered qemu reads it from the environment of each program it starts."""
    rootfs.ensure_binfmt()
    root = rootfs.ensure_rootfs()
    namespace = netns.create(next(_tags))
    try:
        device = sshd.start_device(
            workdir, address=namespace.device_address, port=22, netns=namespace.name, rootfs=root,
            before_exec=rootfs.arm64_mounts(root), environment={"QEMU_CPU": cpu} if cpu else None, **kwargs,
        )
        try:
            yield device, namespace
        finally:
            device.stop()
    finally:
        namespace.destroy()


def missing_for_arm64() -> str | None:
    return sshd.missing_capability() or netns.missing_capability() or rootfs.missing_capability()
