"""Hostile input and faults on the SSH side, as a table: input -> message fragment, exit status, and
what must not exist afterwards. CLI cases run the real `edgeclip` command; SSH cases a real sshd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from testbed import fixtures
from testbed.bundles import make_bundle

from edgeclip.errors import RemoteError
from edgeclip.remote.connect import connect

loopback = fixtures.loopback
PIPE = Path(__file__).parent / "testbed" / "tcp_pipe.py"


def edgeclip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("edgeclip")), *args], capture_output=True, text=True, timeout=120)


# (name, --host value or hosts-file line, ssh config text, expected fragment)
CLI_CASES = [
    ("shell in --host", "--host", "$(touch${IFS}MARK)", "", "is not a host name"),
    ("option in --host", "--host", "-oProxyCommand=touch MARK", "", "is not a host name"),
    ("shell in --hosts line", "--hosts", "pi4\n`touch MARK`\n", "", "line 2"),
    ("Match exec never runs", "--host", "board", 'Match exec "touch MARK"\n  Port 1\nHost board\n  HostName 127.0.0.1\n  Port 9\n',
     "connection refused by 127.0.0.1:9"),
]


@pytest.mark.parametrize(("case", "flag", "value", "config", "fragment"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_host_input(tmp_path, case, flag, value, config, fragment):
    mark = tmp_path / "pwned"
    value, config = value.replace("MARK", str(mark)), config.replace("MARK", str(mark))
    if flag == "--hosts":
        (tmp_path / "hosts").write_text(value)
        value = str(tmp_path / "hosts")
    (tmp_path / "ssh_config").write_text(config)
    bundle = make_bundle(tmp_path / "b.edgeclip")
    result = edgeclip("deploy", str(bundle), flag, value, "--ssh-config", str(tmp_path / "ssh_config"),
                      "--known-hosts", str(tmp_path / "kh"), "--no-agent", "--retries", "0", "--connect-timeout", "2")
    assert result.returncode == 1, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not mark.exists()


def test_proxy_command_carries_the_connection(tmp_path, loopback):
    log = tmp_path / "proxy.log"
    config = tmp_path / "ssh_config"
    config.write_text(f"Host board\n  HostName 127.0.0.1\n  User root\n  ProxyCommand {sys.executable} {PIPE} %h %p {log}\n")
    with connect(f"board:{loopback.port}", loopback.options(ssh_config=config)) as conn:
        assert conn.run("echo ok").out == "ok\n"
        proxy = conn._proxy.proc
    assert log.read_text() == f"127.0.0.1 {loopback.port}\n"  # typed port won over the default
    assert proxy.poll() is not None, "closing the connection stops the ProxyCommand"


KNOWN_HOSTS_CASES = [
    ("revoked key", lambda line: "@revoked * " + line.split(" ", 1)[1], "HOST KEY REVOKED"),
    ("bad base64", lambda line: line.rsplit(" ", 1)[0] + " not*base64", "line 1: the key is not valid base64"),
    ("unknown marker", lambda line: "@bogus " + line, "line 1: unknown marker"),
    ("a directory", None, "is a directory"),
]


@pytest.mark.parametrize(("case", "rewrite", "fragment"), KNOWN_HOSTS_CASES, ids=[c[0] for c in KNOWN_HOSTS_CASES])
def test_known_hosts_problems_are_one_line(tmp_path, loopback, case, rewrite, fragment):
    line = loopback.known_hosts.read_text().strip()
    known = tmp_path / "kh"
    if rewrite is None:
        known.mkdir()
    else:
        known.write_text(rewrite(line) + "\n" + line + "\n")
    with pytest.raises(RemoteError, match=fragment):
        connect(loopback.spec, loopback.options(known_hosts=known, trust_new_host=True))
