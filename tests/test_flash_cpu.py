"""`edgeclip flash` refuses, before any data, a bundle whose code needs CPU features the device's
agent reports lacking (INFO's cpu_features), over the real pty rig and agent process."""

from __future__ import annotations

import flash_rig
import pytest
from flash_rig import wait_for

from edgeclip.errors import FlashError
from edgeclip.flash.agent import board_features
from edgeclip.formats import cpu_features
from edgeclip.formats.bundle import write_bundle
from edgeclip.formats.serial import FrameType

rigs = flash_rig.rigs
PLAN = ("# edgeclip runner plan 3\nvariant ternary asimd,asimddp\nalternative rpi4 asimd\n"
        "module ternary image modules/image.so main\n")


@pytest.fixture
def rpi5_like(tmp_path):
    files = {"bin/run": b"#!/bin/sh\n", "runner.plan": PLAN.encode(), "modules/image.so": b"\0" * 50_000}
    needs = ["asimd", "asimddp", "asimdhp"]
    variant = {"name": "ternary", "precision": "ternary", "kernel_family": "arm_dotprod", "device": "cpu",
               "cpu_features": needs, "towers": {"image": {"path": "modules/image.so"}}}
    manifest = {"name": "dotmodel", "target": {"name": "rpi5", "arch": "aarch64", "cpu_features": needs},
                "runner": "bin/run", "runner_plan": "runner.plan", "variants": [variant]}
    return write_bundle(tmp_path / "dot.edgeclip", manifest, files, executables=frozenset({"bin/run"}))


def test_a_device_lacking_dot_product_is_refused_before_any_data(rigs, rpi5_like):
    rig = rigs(agent_args=("--arch", "aarch64", "--cpu-features", "asimd"))
    rig.start_relay()
    with pytest.raises(FlashError, match=r"^refused before sending: this CPU lacks asimddp \(dot product\): "
                                         r"build with --target rpi4$"):
        rig.flash(rpi5_like)
    sent = wait_for(lambda: [kind for kind, _ in rig.relayed("h2d")][1:] and rig.relayed("h2d"), 5, "the ABORT")
    assert [kind for kind, _ in sent] == [FrameType.HELLO, FrameType.ABORT]
    assert not (rig.dir / "dotmodel").exists()
    rig.assert_agent_alive()


def test_a_device_with_the_features_gets_the_bundle(rigs, rpi5_like):
    rig = rigs(agent_args=("--arch", "aarch64", "--cpu-features", "asimd,asimddp,fp"))
    rig.start_relay()
    result = rig.flash(rpi5_like)
    assert result.device_arch == "aarch64" and (rig.dir / "dotmodel" / "current").is_symlink()


def test_the_agent_reports_this_cpus_features_in_the_runners_names():
    import platform

    arch = platform.machine()
    assert board_features("riscv64" if arch != "riscv64" else "x86_64") is None  # another arch: unknown
    found = board_features(arch)
    assert found is not None and set(found) <= set(cpu_features.DESCRIPTIONS)
    if arch == "x86_64":
        flags = next(line for line in open("/proc/cpuinfo").read().splitlines() if line.startswith("flags"))
        assert found == cpu_features.from_flags(arch, flags.split(":", 1)[1])
