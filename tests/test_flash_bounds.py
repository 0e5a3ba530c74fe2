"""The bounds the serial flasher and agent keep, over real ptys and TCP against a real agent
process: time (the HELLO handshake, an idle client), space (a real full tmpfs while receiving or
extracting) and memory (the agent's VmHWM on hostile and large bundles)."""

from __future__ import annotations

import os
import socket
import time

import flash_rig
import pytest
from flash_rig import agent_server, assert_installed, open_pty, parse_flash_args

from edgeclip.errors import FlashError
from edgeclip.flash.host import flash

small = flash_rig.small


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
