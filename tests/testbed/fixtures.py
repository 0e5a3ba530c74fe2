"""pytest fixtures for the remote tests (import them into a test module to use them)."""

from __future__ import annotations

import pytest

from edgeclip.testbed import devices, sshd


def require(missing: str | None) -> None:
    """Skip naming the exact capability this machine lacks."""
    if missing:
        pytest.skip(f"needs {missing}")


@pytest.fixture
def loopback(tmp_path):
    require(sshd.missing_capability())
    with devices.loopback_device(tmp_path / "device") as device:
        yield device


@pytest.fixture
def arm64(tmp_path, request):
    """The emulated aarch64 board; parametrize it indirectly with a qemu CPU name (cortex-a72) to
    start it as that CPU, else qemu's default (all features)."""
    require(devices.missing_for_arm64())
    with devices.arm64_device(tmp_path / "arm64", cpu=getattr(request, "param", None)) as pair:
        yield pair
