"""The bounds the serial flasher and agent keep, over real ptys and TCP against a real agent
process: time (the HELLO handshake, an idle client), space (a real full tmpfs while receiving or
extracting) and memory (the agent's VmHWM on hostile and large bundles)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time

import flash_rig
import pytest
from flash_rig import (
    agent_server,
    ask,
    assert_installed,
    data,
    hello,
    linked_version,
    make_bundle,
    open_pty,
    parse_flash_args,
    sha256,
    wait_for,
)
from hostile import extension_header, members, small_bundle, sparse_manifest_bundle, with_extensions

from edgeclip.errors import BundleError, FlashError
from edgeclip.flash.host import flash
from edgeclip.flash.link import Link, SocketTransport
from edgeclip.formats.bundle import MANIFEST, sha256_file, verify_bundle
from edgeclip.formats.serial import MAX_PAYLOAD, OFFSET, FrameType, encode

small, rigs = flash_rig.small, flash_rig.rigs
AGENT_RSS_MB = 300
NO_SPACE = re.compile(r"^the device refused \(space\): no space left on the device \(need (\d+\.\d) MB, "
                      r"have (\d+\.\d) MB\); nothing was installed, free space on the device and flash again$")


def _flash_seconds(bundle, port: str, **options) -> tuple[float, FlashError]:
    started = time.monotonic()
    with pytest.raises(FlashError) as refusal:
        flash(bundle, port, progress=False, **options)
    return time.monotonic() - started, refusal.value


def test_an_idle_tcp_client_is_dropped_and_the_flash_queued_behind_it_is_served(tmp_path, small):
    device = tmp_path / "device"
    small_path, small_files = small
    with agent_server(device, args=("--idle-timeout", "1.5")) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        idle = socket.create_connection(("127.0.0.1", port))  # holds the agent's one connection, says nothing
        seconds, refusal = _flash_seconds(small_path, url, timeout=0.2, hello_timeout=0.6)
        assert 0.6 <= seconds < 1.5
        assert str(refusal).startswith(f"no edgeclip-agent answered on {url} within 0.6 s; check")
        assert "\n" not in str(refusal)

        started = time.monotonic()
        result = flash(small_path, url, progress=False, timeout=0.2)  # the default bound outlasts the idle drop
        assert 1.0 < time.monotonic() - started < 6 and result.installed.startswith("smallmodel/versions/")
        assert_installed(device, small_path, small_files, "smallmodel")
        idle.settimeout(5)
        assert idle.recv(1) == b""  # the agent closed the idle client's connection
        idle.close()


def test_a_port_where_nothing_answers_ends_in_one_line_within_the_bound(small, capsys):
    master, slave, name = open_pty()  # a serial line with no agent on the other end
    try:
        args = parse_flash_args([str(small[0]), "--port", name, "--timeout", "0.3", "--hello-timeout", "1.2",
                                 "--no-progress"])
        started = time.monotonic()
        with pytest.raises(FlashError, match=f"^no edgeclip-agent answered on {name} within 1.2 s; check the cable"):
            args.func(args)
        assert 1.2 <= time.monotonic() - started < 2.5
    finally:
        os.close(master)
        os.close(slave)
    with socket.create_server(("127.0.0.1", 0)) as deaf:  # accepts into its backlog, never reads or answers
        url = f"socket://127.0.0.1:{deaf.getsockname()[1]}"
        seconds, refusal = _flash_seconds(small[0], url, timeout=0.3, hello_timeout=1.0)
        assert 1.0 <= seconds < 2.5 and f"no edgeclip-agent answered on {url} within 1 s" in str(refusal)


@pytest.fixture
def tmpfs(tmp_path):
    """A real 2 MB filesystem to fill up (list it before `rigs`, so the agent stops before the unmount)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a 2 MB tmpfs needs CAP_SYS_ADMIN ({done.stderr.decode().strip()}); "
                    "test_flash.py::test_too_little_space_is_refused_before_any_data still covers the refusal")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def _fill(path, leave: int = 0) -> None:
    """Another program takes the disk: write zeros to `path` until only `leave` bytes are free."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while (room := shutil.disk_usage(path).free - leave) > 0:
            os.write(fd, b"\0" * min(room, 1 << 16))
    except OSError as err:
        assert err.errno == 28, err  # ENOSPC: full
    finally:
        os.close(fd)


def _no_space(refusal: FlashError, device) -> tuple[float, float]:
    """(need, have) in MB from the one-line refusal; `have` is what the device now has free."""
    found = NO_SPACE.match(str(refusal))
    assert found, str(refusal)
    need, have = float(found[1]), float(found[2])
    assert need > have and abs(have - shutil.disk_usage(device).free / 1e6) <= 0.1
    return need, have


def _only_the_old_version_is_there(device, old, old_files) -> None:
    """The previous install is current and whole; no partial, staging or .incoming folder is left."""
    assert_installed(device, old, old_files, "smallmodel")
    assert sorted(p.name for p in (device / "smallmodel" / "versions").iterdir()) == [sha256(old)[:12]]
    assert not [p for p in device.rglob("*") if p.name.startswith(".") and p.name != ".staging"]


def test_a_disk_that_fills_while_receiving_is_one_line_and_keeps_the_old_install(tmpfs, rigs, small, tmp_path):
    rig = rigs(device_dir=tmpfs / "device")
    rig.start_relay()
    old, old_files = small
    rig.flash(old)
    newer, newer_files = make_bundle(tmp_path / "newer.edgeclip", "smallmodel", "x86_64", {"weights.bin": 400_000})
    partial = rig.dir / ".staging" / f"{sha256(newer)}.part"

    def fill_once_data_flows():
        wait_for(lambda: partial.exists() and partial.stat().st_size > 40_000, 20, "the transfer to start")
        _fill(tmpfs / "filler")

    filler = threading.Thread(target=fill_once_data_flows)
    filler.start()
    with pytest.raises(FlashError) as refusal:
        rig.flash(newer)
    filler.join(20)
    need, _ = _no_space(refusal.value, tmpfs)
    assert need == round(2 * newer.stat().st_size / 1e6, 1)  # the bundle and its extracted copy
    assert not partial.exists()
    _only_the_old_version_is_there(rig.dir, old, old_files)

    (tmpfs / "filler").unlink()
    rig.flash(newer)
    assert_installed(rig.dir, newer, newer_files, "smallmodel")
    assert linked_version(rig.dir, "smallmodel", "previous") == sha256(old)[:12]


def test_a_disk_too_full_to_extract_is_one_line_and_keeps_the_old_install(tmpfs, rigs, small, tmp_path):
    rig = rigs(device_dir=tmpfs / "device")
    rig.start_relay()
    old, old_files = small
    rig.flash(old)
    # 300 one-byte members: about 0.35 MB of tar, but each takes a whole 4 KiB page once extracted,
    # so the HELLO estimate (twice the tar) passes and the disk fills during extraction.
    tiles, tile_files = make_bundle(tmp_path / "tiles.edgeclip", "smallmodel", "x86_64",
                                    {f"tiles/{i:03}.bin": 1 for i in range(300)})
    _fill(tmpfs / "filler", leave=1_000_000)
    assert 2 * tiles.stat().st_size < shutil.disk_usage(tmpfs).free
    with pytest.raises(FlashError) as refusal:
        rig.flash(tiles)
    need, _ = _no_space(refusal.value, tmpfs)
    assert need == round((tiles.stat().st_size + 301 * 4096) / 1e6, 1)  # the tar, then 301 members in pages
    assert not (rig.dir / ".staging" / f"{sha256(tiles)}.part").exists()
    _only_the_old_version_is_there(rig.dir, old, old_files)

    (tmpfs / "filler").unlink()
    rig.flash(tiles)
    assert_installed(rig.dir, tiles, tile_files, "smallmodel")


def test_extracting_into_a_full_disk_names_the_disk_not_the_tar(tmpfs, tmp_path):
    tiles, _ = make_bundle(tmp_path / "tiles.edgeclip", "tiles", "x86_64", {f"tiles/{i:03}.bin": 1 for i in range(600)})
    with pytest.raises(BundleError, match=rf"^cannot extract the bundle into {tmpfs} \(\[Errno 28\] No space left on "
                                          "device\\); free space there or extract elsewhere$"):
        verify_bundle(tiles, extract_to=tmpfs / "out")
    assert list(tmpfs.iterdir()) == []  # the partial extraction is gone


def _peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MB."""
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"^VmHWM:\s+(\d+) kB$", status, re.M)[1]) / 1024


def _send_unchecked(url: str, path, name: str = "hostile") -> dict:
    """Send any file to the agent as a bundle, as a hostile host would (none of the host's own
    checks); returns the agent's answer to END."""
    link = Link(SocketTransport(socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))))
    try:
        assert ask(link, hello(1, sha256_file(path), path.stat().st_size, name=name), 1)[0] == FrameType.INFO
        seq, offset = 2, 0
        with open(path, "rb") as handle:
            while chunk := handle.read(MAX_PAYLOAD - OFFSET.size):
                assert ask(link, data(seq, offset, chunk), seq) == (FrameType.ACK, offset + len(chunk))
                seq, offset = seq + 1, offset + len(chunk)
        kind, answer = ask(link, encode(FrameType.END, seq, json.dumps({"sha256": sha256_file(path)}).encode()), seq)
        assert kind == FrameType.ERROR
        return answer
    finally:
        link.close()


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A real 128 MB bundle: an agent that held it whole would grow by at least that much."""
    return make_bundle(tmp_path_factory.mktemp("large") / "large.edgeclip", "largemodel", "x86_64",
                       {"weights.bin": 128 << 20})


def test_agent_memory_stays_bounded_on_hostile_headers_and_a_large_bundle(tmp_path, large):
    device = tmp_path / "device"
    with agent_server(device) as (url, agent):
        started = _peak_rss_mb(agent.pid)
        for declared in (4 << 30, 1 << 40):  # 9 MB on the wire, a manifest expanding to 4 GiB / 1 TiB
            bomb = sparse_manifest_bundle(tmp_path / f"sparse-{declared}.edgeclip", declared)
            answer = _send_unchecked(url, bomb)
            assert answer["code"] == "bundle" and "manifest.json is a sparse tar member" in answer["message"]
        files = members(small_bundle(tmp_path / "good.edgeclip"))
        pax = with_extensions(tmp_path / "pax.edgeclip", files, MANIFEST, extension_header(tarfile.XHDTYPE, 1 << 40))
        answer = _send_unchecked(url, pax)
        assert answer["code"] == "bundle" and f"a PAX extended header in the tar declares {1 << 40} bytes" in answer["message"]
        assert _peak_rss_mb(agent.pid) < AGENT_RSS_MB

        large_path, large_files = large
        flash(large_path, url, progress=False, chunk=MAX_PAYLOAD)
        assert_installed(device, large_path, large_files, "largemodel")
        peak = _peak_rss_mb(agent.pid)
        assert peak < AGENT_RSS_MB and peak - started < 32, (started, peak)  # streamed, never held whole
        assert agent.poll() is None


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_time_bounds_must_be_positive_seconds(value, capsys):
    from edgeclip.flash.agent import build_parser

    for flash_bound in ("--hello-timeout", "--timeout"):
        with pytest.raises(SystemExit) as flash_exit:
            parse_flash_args(["b.edgeclip", "--port", "/dev/null", flash_bound, value])
        assert flash_exit.value.code == 2
    with pytest.raises(SystemExit) as agent_exit:
        build_parser().parse_args(["serial", "--listen", ":0", "--idle-timeout", value])
    assert agent_exit.value.code == 2
    assert capsys.readouterr().err.count(f"{value!r} is not a positive number of seconds") == 3


@pytest.mark.parametrize("value", ["-1", "1.5", "many"])
def test_retries_must_be_a_whole_number_of_zero_or_more(value, capsys):
    with pytest.raises(SystemExit) as flash_exit:
        parse_flash_args(["b.edgeclip", "--port", "/dev/null", "--retries", value])
    assert flash_exit.value.code == 2
    assert f"{value!r} is not a whole number of 0 or more" in capsys.readouterr().err
    assert parse_flash_args(["b.edgeclip", "--port", "/dev/null", "--retries", "0"]).retries == 0
