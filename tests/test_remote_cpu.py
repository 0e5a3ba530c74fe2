"""The emulated aarch64 board started as a Cortex-A72 (QEMU_CPU through sshd's SetEnv to the
binfmt qemu): the probe reads its features from the auxiliary vector, and deploy and the --host
verbs refuse an rpi5 bundle (dot product) before sending anything, while an rpi4 one deploys."""

from __future__ import annotations

import pytest
from testbed import fixtures
from testbed.bundles import make_bundle

from edgeclip.errors import RemoteError
from edgeclip.remote.connect import connect
from edgeclip.remote.deploy import deploy
from edgeclip.remote.modes import run_on_board
from edgeclip.remote.probe import probe

arm64 = fixtures.arm64
RPI5_PLAN = ("# edgeclip runner plan 3\nvariant ternary asimd,asimddp,asimdhp\nvariant fp32 asimd,asimddp,asimdhp\n"
             "alternative rpi4 asimd\nalternative jetson-orin-nano asimd,asimddp,asimdhp\n")
RPI4_PLAN = "# edgeclip runner plan 3\nvariant ternary asimd\nvariant fp32 asimd\nalternative rpi5 asimd,asimddp,asimdhp\n"
REFUSAL = "this CPU lacks asimddp (dot product), asimdhp (half-precision arithmetic): build with --target rpi4"


@pytest.mark.parametrize("arm64", ["cortex-a72"], indirect=True)
def test_an_a72_board_refuses_an_rpi5_bundle_before_upload_and_takes_an_rpi4_one(arm64, tmp_path):
    device, _ = arm64
    with connect(device.spec, device.options()) as conn:
        assert probe(conn).cpu_features == ("asimd",)
    rpi5 = make_bundle(tmp_path / "rpi5.edgeclip", arch="aarch64", target="rpi5", plan=RPI5_PLAN)
    with pytest.raises(RemoteError) as refused:
        deploy(rpi5, device.spec, device.options())
    assert str(refused.value) == f"{device.spec}: {REFUSAL}"
    assert not (device.home / ".edgeclip").exists()  # nothing sent, not even the staging folder
    with pytest.raises(RemoteError, match=f"^{device.spec}: this CPU lacks asimddp"):
        run_on_board(rpi5, device.spec, "embed", [("--text", "a cat")], device.options())
    rpi4 = make_bundle(tmp_path / "rpi4.edgeclip", arch="aarch64", target="rpi4", plan=RPI4_PLAN)
    deployed = deploy(rpi4, device.spec, device.options())
    assert deployed.uploaded and deployed.device.cpu_features == ("asimd",)


def test_the_default_board_reports_dot_product(arm64):
    device, _ = arm64
    with connect(device.spec, device.options()) as conn:
        features = probe(conn).cpu_features
    assert {"asimd", "asimddp", "asimdhp"} <= set(features)
