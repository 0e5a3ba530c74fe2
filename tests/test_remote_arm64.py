"""The emulated aarch64 board (Debian arm64 userland under qemu-user, in its own network namespace):
probe; deploy and profile of a real compiled rpi4 bundle with its native runner; and the network
faults on its veth link (those use the fast synthetic bundles of testbed.bundles)."""

from __future__ import annotations

import hashlib
import tarfile
import time

import pytest
from testbed import fixtures
from testbed.bundles import make_bundle
from testbed.faults import LinkOutage, nft_missing, random_drop, rate_limit, tc_missing
from testbed.fixtures import require

from edgeclip.errors import RemoteError
from edgeclip.formats.bundle import sha256_file
from edgeclip.remote.connect import connect
from edgeclip.remote.deploy import deploy
from edgeclip.remote.probe import probe
from edgeclip.remote.profile import profile

arm64 = fixtures.arm64


def arm_bundle(path, **kwargs):
    return make_bundle(path, arch="aarch64", target="rpi4", **kwargs)


def installed(device, name="tiny-clip"):
    link = device.home / ".edgeclip" / name / "current"
    return link.readlink().name if link.is_symlink() else None


def staged(device):
    staging = device.home / ".edgeclip" / ".staging"
    return {p.name: p.stat().st_size for p in staging.iterdir()} if staging.exists() else {}


def test_probe_sees_an_aarch64_debian_board(arm64):
    device, _ = arm64
    with connect(device.spec, device.options()) as conn:
        info = probe(conn)
        assert conn.run("uname -m").out.strip() == "aarch64"
    assert info.arch == "aarch64" and info.os.startswith("Debian") and info.home == "/root"
    assert info.board.startswith("edgeclip test bed") and info.cores >= 1 and info.disk_free_kb > 0
    assert info.missing_tools == ()


def test_x86_bundle_refused_before_upload(tmp_path, arm64):
    device, _ = arm64
    with pytest.raises(RemoteError, match="built for x86-64 .* but the board is aarch64"):
        deploy(make_bundle(tmp_path / "x86.edgeclip"), device.spec, device.options())
    assert not (device.home / ".edgeclip").exists()


@pytest.mark.slow
def test_real_rpi4_bundle_deploys_and_profiles_with_the_native_runner(tmp_path, arm64, tiny_clip_rpi4_bundle):
    """The remote done-when: a compiled rpi4 bundle is deployed over SSH, its native runner runs the
    ternary and fp32 towers on the aarch64 board and reproduces the host reference, and the report
    is written."""
    from edgeclip.remote.report import write_report

    device, _ = arm64
    deployed = deploy(tiny_clip_rpi4_bundle, device.spec, device.options())
    assert deployed.uploaded and installed(device, deployed.name) == deployed.version and staged(device) == {}
    result = profile(tiny_clip_rpi4_bundle, device.spec, device.options(), runs=2)
    assert not result.deploy.uploaded, "profile reuses the version deploy installed"
    assert result.device.arch == "aarch64" and set(result.modules) == {"ternary", "fp32"}
    for module in result.modules.values():
        assert module.output_ok and 0 < module.latency_ms["p50"] <= module.latency_ms["p99"]
    assert result.modules["ternary"].cosine_to_reference >= 0.995
    assert result.modules["fp32"].cosine_to_reference >= 0.999
    assert result.passed and set(result.ratios) >= {"speedup_p50", "memory_ratio"}
    files = write_report(result, tmp_path / "report")
    assert all(path.stat().st_size > 0 for path in files.values())
    assert "Output check: passed." in files["markdown"].read_text()


def test_link_down_3s_mid_upload_resumes_and_completes(tmp_path, arm64):
    require(tc_missing())
    device, namespace = arm64
    bundle = arm_bundle(tmp_path / "b.edgeclip", fp32_bytes=2 << 20)
    rate_limit(namespace, "8mbit")  # about 1 MB/s, so the outage lands mid-upload
    seen = []
    outage = LinkOutage(namespace, seconds=3.0)

    def progress(done, total, rate):
        seen.append(done)
        if done > total // 4:
            outage.start()

    result = deploy(bundle, device.spec, device.options(link_timeout=1.5, connect_timeout=2.0, attempts=6), progress)
    outage.join()
    assert outage.started
    assert result.reconnects >= 1 and result.resumed_from and 0 < result.resumed_from[0] < result.bytes
    assert installed(device) == sha256_file(bundle)[:12] and staged(device) == {}
    assert seen[-1] == result.bytes


def test_link_down_for_good_is_a_clean_error_within_10s_and_resumes_later(tmp_path, arm64):
    require(tc_missing())
    device, namespace = arm64
    first = deploy(arm_bundle(tmp_path / "1.edgeclip", seed=1), device.spec, device.options())
    bundle = arm_bundle(tmp_path / "2.edgeclip", seed=2, fp32_bytes=2 << 20)
    rate_limit(namespace, "8mbit")
    outage = LinkOutage(namespace, seconds=None)

    def progress(done, total, rate):
        if done > total // 4:
            outage.start()

    options = device.options(link_timeout=3.0, connect_timeout=3.0, attempts=2)
    with pytest.raises(RemoteError, match="lost the connection|no answer|cannot reach"):
        deploy(bundle, device.spec, options, progress)
    assert time.monotonic() - outage.started < 10.0
    assert installed(device) == first.version, "the running version is untouched"
    partial = staged(device)
    assert len(partial) == 1 and 0 < next(iter(partial.values())) < bundle.stat().st_size
    namespace.set_link(True)
    second = deploy(bundle, device.spec, device.options())
    assert second.resumed_from == (next(iter(partial.values())),)
    assert installed(device) == second.version and second.previous == first.version


def test_random_5_percent_packet_drop_completes_with_matching_hashes(tmp_path, arm64):
    require(nft_missing())
    device, namespace = arm64
    random_drop(namespace, 5)
    bundle = arm_bundle(tmp_path / "b.edgeclip", fp32_bytes=1 << 20)
    result = deploy(bundle, device.spec, device.options(link_timeout=6.0, attempts=6))
    assert installed(device) == sha256_file(bundle)[:12] == result.version
    with connect(device.spec, device.options(link_timeout=6.0)) as conn:
        check = conn.run("cd ~/.edgeclip/tiny-clip/current && sha256sum model/fp32.bin")
    with tarfile.open(bundle) as tar:
        expected = hashlib.sha256(tar.extractfile("model/fp32.bin").read()).hexdigest()
    assert check.ok and check.out.split()[0] == expected


def test_bandwidth_cap_completes_and_progress_shows_throughput(tmp_path, arm64):
    require(tc_missing())
    device, namespace = arm64
    rate_limit(namespace, "4mbit")  # 500 kB/s
    rates = []
    bundle = arm_bundle(tmp_path / "b.edgeclip", fp32_bytes=1 << 20)
    result = deploy(bundle, device.spec, device.options(), progress=lambda done, total, rate: rates.append(rate))
    assert installed(device) == result.version
    assert 200e3 < result.bytes_per_second < 700e3
    assert rates and 100e3 < rates[-1] < 1.5e6  # includes what the SSH window buffers
