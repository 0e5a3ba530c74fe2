"""`edgeclip flash` against a real `edgeclip-agent` process over real pseudo-terminals.

host (pyserial on pty A) <-> tests/flash_relay.py (paced at BAUD, may corrupt frames) <-> agent (pty B)

BAUD is 3 Mbaud (300 kB/s, what FT232H / CP2102N class adapters run) so a 2 MB bundle crosses in
about 7 s; the agent and relay are separate processes, so killing the relay cuts the cable while
both ends stay up. Hostile-input tests write raw bytes straight into the agent's pty.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import zlib

import flash_rig
import pytest
from flash_rig import (
    BAUD,
    LINE_BYTES_PER_SECOND,
    ROOT,
    FdTransport,
    ask,
    assert_installed,
    data,
    hello,
    listening_agent,
    parse_flash_args,
    sha256,
    wait_for,
)

from edgeclip.errors import FlashError
from edgeclip.flash.host import flash
from edgeclip.flash.link import Link
from edgeclip.formats.serial import CRC, HEADER, MAGIC, MAX_PAYLOAD, FrameType, encode

big, small, rigs = flash_rig.big, flash_rig.small, flash_rig.rigs


def test_multi_megabyte_bundle_arrives_identical_at_line_rate_and_keeps_the_previous_version(rigs, big, small):
    rig = rigs()
    rig.start_relay()
    small_path, small_files = small
    rig.flash(small_path)
    big_path, big_files = big
    result = rig.flash(big_path)

    assert result.sha256 == sha256(big_path) and result.size == big_path.stat().st_size
    assert result.retries == 0 and result.resumed_from == 0 and result.bytes_sent == result.size
    assert result.installed == f"bigmodel/versions/{result.sha256[:12]}"
    assert_installed(rig.dir, big_path, big_files, "bigmodel")
    # Each name has its own slot in the one layout: the other model stays installed and current.
    assert_installed(rig.dir, small_path, small_files, "smallmodel")
    # Paced at BAUD: never faster than the line, and stop-and-wait loses little to turnarounds.
    assert 0.6 * LINE_BYTES_PER_SECOND < result.throughput < 1.02 * LINE_BYTES_PER_SECOND, result.throughput
    print(f"\nthroughput at {BAUD} baud: {result.throughput / 1e3:.1f} kB/s ({result.throughput / LINE_BYTES_PER_SECOND:.0%} of the line)")


def test_five_percent_corrupted_frames_arrive_identical_and_retries_are_reported(rigs, big, capsys):
    rig = rigs()
    rig.start_relay(corrupt=0.05, seed=3)
    big_path, big_files = big
    args = parse_flash_args([str(big_path), "--port", rig.host_port, "--baud", str(BAUD), "--timeout", "0.25", "--no-progress"])
    args.func(args)

    assert_installed(rig.dir, big_path, big_files, "bigmodel")
    reported = int(re.search(r"(\d+) retries", capsys.readouterr().out).group(1))
    damaged = sum(bad for _, bad in rig.relayed("h2d") + rig.relayed("d2h"))
    forwarded = len(rig.relayed("h2d") + rig.relayed("d2h"))
    assert 0.02 < damaged / forwarded < 0.09, (damaged, forwarded)
    assert reported >= sum(bad for _, bad in rig.relayed("h2d")) > 0  # every damaged host frame was sent again


def test_cut_link_resumes_from_the_device_offset(rigs, big):
    rig = rigs()
    rig.start_relay()
    big_path, big_files = big
    size = big_path.stat().st_size
    partial = rig.dir / ".staging" / f"{sha256(big_path)}.part"
    failure = []

    def first_session():
        try:
            rig.flash(big_path, timeout=0.3, retries=3)  # gives up after about a second of silence
        except FlashError as err:
            failure.append(err)

    sender = threading.Thread(target=first_session)
    sender.start()
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0.4 * size, 30, "40% of the bundle")
    rig.cut()
    sender.join(30)
    assert failure and "flash again to resume" in str(failure[0])
    held = partial.stat().st_size
    assert 0.4 * size < held < size and not (rig.dir / "bigmodel").exists()

    rig.start_relay()
    result = rig.flash(big_path)
    assert held <= result.resumed_from < size
    assert result.bytes_sent == size - result.resumed_from < size
    assert_installed(rig.dir, big_path, big_files, "bigmodel")


def test_architecture_mismatch_is_refused_before_any_data(rigs, big):
    rig = rigs(agent_args=("--arch", "aarch64"))
    rig.start_relay()
    with pytest.raises(FlashError, match="device is aarch64 but the bundle is built for x86_64"):
        rig.flash(big[0])
    sent = wait_for(lambda: [kind for kind, _ in rig.relayed("h2d")][1:] and rig.relayed("h2d"), 5, "the ABORT")
    assert [kind for kind, _ in sent] == [FrameType.HELLO, FrameType.ABORT]
    assert not list((rig.dir / ".staging").iterdir()) and not (rig.dir / "bigmodel").exists()
    rig.assert_agent_alive()


def test_too_little_space_is_refused_before_any_data(rigs, big):
    rig = rigs(agent_args=("--max-bytes", "3000000"))  # the bundle and its extracted copy need ~4.2 MB
    rig.start_relay()
    with pytest.raises(FlashError, match=r"refused before sending: no space left on the device \(need 4\.2 MB, have 3\.0 MB\)"):
        rig.flash(big[0])
    sent = wait_for(lambda: [kind for kind, _ in rig.relayed("h2d")][1:] and rig.relayed("h2d"), 5, "the ABORT")
    assert [kind for kind, _ in sent] == [FrameType.HELLO, FrameType.ABORT]
    assert not list((rig.dir / ".staging").iterdir())


def test_hostile_frames_never_crash_the_agent_and_a_good_transfer_follows(rigs, small):
    rig = rigs(agent_args=("--max-bytes", "10000000"))
    link = Link(FdTransport(rig.dev_master))
    probe = encode(0x77, 1, b"")
    assert ask(link, os.urandom(30_000) + probe, 1) == (FrameType.ERROR, {"code": "protocol", "message": "frame type 119 is not one a host sends"})

    head = HEADER.pack(MAGIC, 2, FrameType.DATA, 2, MAX_PAYLOAD + 1)
    assert ask(link, head + CRC.pack(zlib.crc32(head)) + os.urandom(500), 2)[0] == FrameType.NAK
    bad_crc = bytearray(data(3, 0, b"z" * 1000))
    bad_crc[500] ^= 0x10
    assert ask(link, bytes(bad_crc), 3)[0] == FrameType.NAK
    kind, answer = ask(link, encode(FrameType.HELLO, 4, b"{}", version=9), 4)
    assert kind == FrameType.ERROR and answer["code"] == "version"
    assert ask(link, data(5, 0, b"early"), 5)[1]["code"] == "protocol"
    assert ask(link, encode(FrameType.HELLO, 6, b"\xff not json"), 6)[1]["code"] == "protocol"

    # A frame cut off mid-way, then silence: the agent drops it instead of letting it swallow the next frame.
    link.transport.write(data(8, 0, b"q" * 4000)[:100])
    time.sleep(0.5)
    assert ask(link, encode(0x77, 9, b""), 9)[0] == FrameType.ERROR

    # The agent enforces arch and space itself, even for a host that ignores its INFO.
    fake = hashlib.sha256(b"not the payload").hexdigest()
    assert ask(link, hello(10, fake, 1000, arch="riscv64"), 10)[1]["arch"] == "x86_64"
    assert ask(link, data(11, 0, b"a" * 1000), 11)[1]["code"] == "arch"
    assert ask(link, hello(12, fake, 9_000_000), 12)[0] == FrameType.INFO
    assert ask(link, data(13, 0, b"a" * 1000), 13)[1]["code"] == "space"
    assert not list((rig.dir / ".staging").iterdir())

    # Data past the announced size, then a bad final hash: refused, and nothing is left behind.
    assert ask(link, hello(14, fake, 1000), 14)[1]["offset"] == 0
    assert ask(link, data(15, 0, b"b" * 1001), 15)[1]["code"] == "protocol"
    assert ask(link, encode(FrameType.DATA, 7, b"abc"), 7) == (FrameType.NAK, 0)  # too short to hold an offset
    assert ask(link, data(16, 0, b"b" * 1000), 16) == (FrameType.ACK, 1000)
    assert ask(link, data(17, 0, b"b" * 1000), 17) == (FrameType.ACK, 1000)  # a duplicate is acknowledged, not written
    kind, answer = ask(link, encode(FrameType.END, 18, json.dumps({"sha256": fake}).encode()), 18)
    assert kind == FrameType.ERROR and answer["code"] == "hash"
    assert not list((rig.dir / ".staging").iterdir()) and not (rig.dir / "x").exists()

    rig.assert_agent_alive()
    rig.start_relay()
    small_path, small_files = small
    rig.flash(small_path)
    assert_installed(rig.dir, small_path, small_files, "smallmodel")


def test_a_different_bundle_never_resumes_a_stale_partial(rigs, small, tmp_path):
    rig = rigs()
    link = Link(FdTransport(rig.dev_master))
    other = hashlib.sha256(b"other bundle").hexdigest()
    assert ask(link, hello(1, other, 5000), 1)[0] == FrameType.INFO
    assert ask(link, data(2, 0, b"c" * 3000), 2) == (FrameType.ACK, 3000)
    assert ask(link, hello(3, other, 5000), 3)[1]["offset"] == 3000  # same bundle: resumes
    small_path, small_files = small
    answer = ask(link, hello(4, sha256(small_path), small_path.stat().st_size), 4)[1]
    assert answer["offset"] == 0
    assert [p.name for p in (rig.dir / ".staging").iterdir()] == [f"{sha256(small_path)}.part"]


def test_flash_command_over_a_socket_url_to_a_listening_agent(tmp_path, small, capsys):
    device = tmp_path / "device"
    with listening_agent(device) as url:
        small_path, small_files = small
        args = parse_flash_args([str(small_path), "--port", url, "--no-progress"])
        args.func(args)
        out = capsys.readouterr().out
        assert f"device now runs smallmodel/versions/{sha256(small_path)[:12]}" in out and "0 retries" in out
        assert_installed(device, small_path, small_files, "smallmodel")
        args.func(args)  # the same bundle again, on a fresh connection: the device says it has it
        assert "is already current" in capsys.readouterr().out
        assert_installed(device, small_path, small_files, "smallmodel")


def test_unreachable_port_is_a_flash_error(small):
    with pytest.raises(FlashError, match="cannot open socket://127.0.0.1:9"):
        flash(small[0], "socket://127.0.0.1:9", progress=False)


def test_flash_package_and_agent_import_neither_torch_nor_tvm():
    code = (
        "import sys, edgeclip.flash, edgeclip.flash.agent, edgeclip.flash.host, edgeclip.cli.flash;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tvm', 'tvm_ffi', 'numpy', 'tqdm'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
