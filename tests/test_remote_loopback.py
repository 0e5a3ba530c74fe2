"""Deploy, rollback, profile and SSH policy against a real sshd on 127.0.0.1 (edgeclip.testbed)."""

from __future__ import annotations

import argparse
import subprocess
import time

import psutil
import pytest
from testbed import fixtures
from testbed.bundles import make_bundle
from testbed.faults import MemoryLimit, memory_cgroup_missing
from testbed.fixtures import require

from edgeclip.cli.remote import add_remote_commands
from edgeclip.errors import RemoteError
from edgeclip.remote.connect import connect, quote_command
from edgeclip.remote.deploy import deploy, rollback
from edgeclip.remote.hostkeys import fingerprint
from edgeclip.remote.profile import profile
from edgeclip.remote.report import write_report
from edgeclip.testbed import devices

loopback = fixtures.loopback

HOSTILE = ["; rm -rf ~", "$(touch pwned)", "a b  c", "it's \"quoted\"", "`touch pwned2`", "-rf"]


def current_of(device, name):
    link = device.home / ".edgeclip" / name / "current"
    return link.readlink().name if link.is_symlink() else None


def run_runner(device, name, module="ternary"):
    with connect(device.spec, device.options()) as conn:
        folder = f"/root/.edgeclip/{name}/current"
        return conn.run(quote_command(["sh", "-c", 'cd "$1" && ./bin/edgeclip-runner bench --runs 2 --variant "$2"', "x", folder, module]))


def test_unknown_host_key_refused_with_fingerprint_then_trusted_on_request(tmp_path):
    require(devices.sshd.missing_capability())
    with devices.loopback_device(tmp_path / "d", trusted=False) as device:
        with pytest.raises(RemoteError) as refused:
            connect(device.spec, device.options())
        message = str(refused.value)
        from paramiko import PKey

        expected = fingerprint(PKey.from_path(str(device.host_key)))
        assert "unknown host key" in message and expected in message and "--trust-new-host" in message
        assert not device.known_hosts.exists()
        with connect(device.spec, device.options(trust_new_host=True)) as conn:
            assert conn.run("echo ok").out == "ok\n"
        assert f"[127.0.0.1]:{device.port} ssh-ed25519" in device.known_hosts.read_text()
        with connect(device.spec, device.options()) as conn:
            assert conn.run("true").ok


def test_changed_host_key_refused_even_with_trust_flag(tmp_path, loopback):
    with devices.loopback_device(tmp_path / "other") as other:
        impostor_line = other.known_hosts.read_text().replace(f"]:{other.port} ", f"]:{loopback.port} ")
    loopback.known_hosts.write_text(impostor_line)
    with pytest.raises(RemoteError, match="HOST KEY CHANGED.*ssh-keygen -f .* -R"):
        connect(loopback.spec, loopback.options(trust_new_host=True))
    assert loopback.known_hosts.read_text() == impostor_line


def test_auth_failure_and_refused_connection_are_clean_errors(tmp_path, loopback):
    stranger = devices.sshd.keygen(tmp_path / "stranger", "stranger")
    with pytest.raises(RemoteError, match="authentication failed.*stranger.*authorized_keys"):
        connect(loopback.spec, loopback.options(identities=(stranger,)))
    closed = devices.sshd.free_port()
    started = time.monotonic()
    with pytest.raises(RemoteError, match="connection refused"):
        connect(f"root@127.0.0.1:{closed}", loopback.options())
    assert time.monotonic() - started < 2, "a refused connection is not retried"


def test_ssh_config_alias_and_proxy_jump(tmp_path, loopback):
    with devices.loopback_device(tmp_path / "target") as target:
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host jumpbox\n  HostName 127.0.0.1\n  Port {loopback.port}\n  User root\n  IdentityFile {loopback.identity}\n"
            f"Host board\n  HostName 127.0.0.1\n  Port {target.port}\n  User root\n  IdentityFile {target.identity}\n"
            "  ProxyJump jumpbox\n"
        )
        known = tmp_path / "known_hosts"
        known.write_text(loopback.known_hosts.read_text() + target.known_hosts.read_text())
        options = target.options(ssh_config=config, identities=(), known_hosts=known)
        with connect("board", options) as conn:
            assert conn.endpoint.port == target.port and len(conn._jumps) == 1
            # The target's client socket belongs to the jump host's sshd: the hop really forwarded it.
            client_port = int(conn.run("echo $SSH_CONNECTION").out.split()[1])
            jump_tree = psutil.Process(loopback.proc.pid).children(recursive=True)
            ports = {c.laddr.port for p in jump_tree for c in p.net_connections(kind="tcp")}
            assert client_port in ports


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_quoted_everywhere(tmp_path, loopback, name):
    bundle = make_bundle(tmp_path / "b.edgeclip", name=name)
    result = deploy(bundle, loopback.spec, loopback.options())
    assert (loopback.home / ".edgeclip" / name / "versions" / result.version / "bin" / "edgeclip-runner").is_file()
    assert current_of(loopback, name) == result.version
    assert run_runner(loopback, name).ok
    with pytest.raises(RemoteError, match="no previous version"):
        rollback(loopback.spec, name, loopback.options())
    leftovers = subprocess.run(["find", str(tmp_path), "-name", "pwned*"], capture_output=True, text=True).stdout
    assert leftovers == "" and sorted(p.name for p in loopback.home.iterdir()) == [".edgeclip"]


def test_redeploy_keeps_previous_and_rollback_swaps(tmp_path, loopback):
    v1 = deploy(make_bundle(tmp_path / "1.edgeclip", seed=1), loopback.spec, loopback.options())
    again = deploy(make_bundle(tmp_path / "1.edgeclip", seed=1), loopback.spec, loopback.options())
    assert not again.uploaded and again.version == v1.version
    v2 = deploy(make_bundle(tmp_path / "2.edgeclip", seed=2), loopback.spec, loopback.options())
    v3 = deploy(make_bundle(tmp_path / "3.edgeclip", seed=3), loopback.spec, loopback.options())
    assert (v2.previous, v3.previous) == (v1.version, v2.version)
    versions = loopback.home / ".edgeclip" / "tiny-clip" / "versions"
    assert sorted(p.name for p in versions.iterdir()) == sorted([v2.version, v3.version])
    assert rollback(loopback.spec, "tiny-clip", loopback.options())["current"] == v2.version
    assert current_of(loopback, "tiny-clip") == v2.version and run_runner(loopback, "tiny-clip").ok
    assert rollback(loopback.spec, "tiny-clip", loopback.options())["current"] == v3.version
    with pytest.raises(RemoteError, match="nothing named like that"):
        rollback(loopback.spec, "not-installed", loopback.options())
    assert list((loopback.home / ".edgeclip" / ".staging").iterdir()) == []


def test_redeploying_the_current_version_keeps_previous_and_repairs_a_damaged_copy(tmp_path, loopback):
    v1 = deploy(make_bundle(tmp_path / "1.edgeclip", seed=1), loopback.spec, loopback.options())
    bundle = make_bundle(tmp_path / "2.edgeclip", seed=2)
    v2 = deploy(bundle, loopback.spec, loopback.options())
    again = deploy(bundle, loopback.spec, loopback.options())
    assert not again.uploaded and again.previous == v1.version
    weights = loopback.home / ".edgeclip" / "tiny-clip" / "versions" / v2.version / "model" / "fp32.bin"
    weights.write_bytes(b"damaged")
    repaired = deploy(bundle, loopback.spec, loopback.options())
    assert repaired.uploaded and repaired.previous == v1.version and current_of(loopback, "tiny-clip") == v2.version
    checked = run_runner(loopback, "tiny-clip", "fp32")
    assert checked.ok and '"cosine_to_reference": 1.0' in checked.out
    versions = loopback.home / ".edgeclip" / "tiny-clip" / "versions"
    assert sorted(p.name for p in versions.iterdir()) == sorted([v1.version, v2.version])


def test_failed_install_leaves_previous_version_running(tmp_path, loopback):
    v1 = deploy(make_bundle(tmp_path / "1.edgeclip", seed=1), loopback.spec, loopback.options())
    broken = make_bundle(tmp_path / "2.edgeclip", seed=2)
    from edgeclip.formats.bundle import sha256_file

    # A file where the new version's folder must go makes the final move fail on the board.
    (loopback.home / ".edgeclip" / "tiny-clip" / "versions" / sha256_file(broken)[:12]).write_text("in the way")
    with pytest.raises(RemoteError, match="cannot move the new version into place"):
        deploy(broken, loopback.spec, loopback.options())
    assert current_of(loopback, "tiny-clip") == v1.version and run_runner(loopback, "tiny-clip").ok
    assert not list((loopback.home / ".edgeclip" / "tiny-clip" / "versions").glob(".incoming.*"))


def test_wrong_architecture_refused_before_upload(tmp_path, loopback):
    bundle = make_bundle(tmp_path / "arm.edgeclip", arch="aarch64", target="rpi4")
    with pytest.raises(RemoteError, match=r"built for rpi4 \(aarch64\) but the board is x86_64"):
        deploy(bundle, loopback.spec, loopback.options())
    assert not (loopback.home / ".edgeclip").exists()


def test_full_disk_is_a_clean_error(tmp_path):
    require(devices.sshd.missing_capability())
    with devices.loopback_device(tmp_path / "d", home_size="1m") as device:
        with pytest.raises(RemoteError, match="disk is full"):
            deploy(make_bundle(tmp_path / "big.edgeclip", fp32_bytes=1 << 20), device.spec, device.options())
        from edgeclip.remote.diagnose import explain

        with connect(device.spec, device.options()) as conn:
            filled = conn.run("head -c 2000000 /dev/zero > ~/fill")
        assert "disk is full" in str(explain(filled, "filling", device.spec))


def test_profile_writes_report_with_passing_output_check(tmp_path, loopback):
    bundle = make_bundle(tmp_path / "b.edgeclip", ternary_bytes=32 << 10, fp32_bytes=128 << 10)
    result = profile(bundle, loopback.spec, loopback.options(), runs=5)
    assert result.passed and set(result.modules) == {"ternary", "fp32"}
    for figures in result.modules.values():
        assert 0 < figures.latency_ms["p50"] <= figures.latency_ms["p90"] <= figures.latency_ms["p99"]
        assert figures.peak_rss_kb > 0 and figures.load_ms > 0
    files = write_report(result, tmp_path / "report")
    assert "speedup p50" in files["markdown"].read_text() and files["latency"].stat().st_size > 1000


def test_runner_out_of_memory_is_reported_not_hung(tmp_path):
    require(devices.sshd.missing_capability() or memory_cgroup_missing())
    bundle = make_bundle(tmp_path / "b.edgeclip", ternary_bytes=64 << 10, fp32_bytes=8 << 20)
    limit = MemoryLimit(32 << 20)
    try:
        with devices.loopback_device(tmp_path / "d") as device:
            limit.add(device.proc.pid)
            started = time.monotonic()
            with pytest.raises(RemoteError, match="out of memory while running the fp32 module"):
                profile(bundle, device.spec, device.options(), runs=1)
            assert time.monotonic() - started < 60
            assert limit.oom_kills() >= 1
    finally:
        limit.remove()


def test_cli_fleet_deploys_to_all_and_reports_the_failing_host(tmp_path, loopback, capsys):
    with devices.loopback_device(tmp_path / "second") as second:
        known = tmp_path / "known_hosts"
        known.write_text(loopback.known_hosts.read_text() + second.known_hosts.read_text())
        dead = devices.sshd.free_port()
        hosts = tmp_path / "hosts"
        hosts.write_text(f"{loopback.spec}\nroot@127.0.0.1:{dead}  # switched off\n{second.spec}\n")
        parser = argparse.ArgumentParser()
        add_remote_commands(parser.add_subparsers(dest="verb", required=True))
        bundle = make_bundle(tmp_path / "b.edgeclip")
        args = parser.parse_args(["deploy", str(bundle), "--hosts", str(hosts), "--known-hosts", str(known),
                                  "--ssh-config", "/dev/null", "--no-agent", "-i", str(loopback.identity),
                                  "-i", str(second.identity), "--jobs", "3"])
        with pytest.raises(RemoteError, match="1 of 3 hosts failed"):
            args.func(args)
        table = capsys.readouterr().out
        assert "connection refused" in table and "2 of 3 hosts succeeded" in table
        assert current_of(loopback, "tiny-clip") and current_of(second, "tiny-clip")
