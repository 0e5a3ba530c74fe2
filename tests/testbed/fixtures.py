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
def arm64(tmp_path):
    require(devices.missing_for_arm64())
    with devices.arm64_device(tmp_path / "arm64") as pair:
        yield pair
