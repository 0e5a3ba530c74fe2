"""The light device agent: `edgeclip-agent.pyz`, built from the real sources the agent imports, run
by a bare python3 (a fresh `venv --without-pip`: no pyserial, torch, TVM or numpy) and receiving
real flashes over a pty through tests/flash_relay.py (so its termios transport carries them) and
over TCP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from argparse import ArgumentParser
from pathlib import Path

import flash_rig
import pytest
from flash_rig import assert_installed, listening_agent, sha256

from edgeclip.bundle.agent_app import MEMBER, PACKAGE_DIR, agent_sources, agent_zipapp
from edgeclip.cli.flash import add_flash_command
from edgeclip.errors import BundleError
from edgeclip.flash.host import flash

big, small, rigs = flash_rig.big, flash_rig.small, flash_rig.rigs


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> tuple[Path, Path]:
    """(python3 of a fresh venv made --without-pip, the zipapp written by `edgeclip agent`)."""
    root = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python3"
    parser = ArgumentParser(prog="edgeclip")
    add_flash_command(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["agent", "--out", str(root / "edgeclip-agent.pyz")])
    args.func(args)
    return python, root / "edgeclip-agent.pyz"


def run_bare(bare, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    python, app = bare
    return subprocess.run([str(python), str(app), *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def copy_sources(destination: Path) -> Path:
    """The agent's source files copied to `destination/edgeclip`, with other modification times."""
    for path in agent_sources().values():
        target = destination / path.relative_to(PACKAGE_DIR.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        os.utime(target, (1_000_000_000, 1_000_000_000))
    return destination / "edgeclip"


def test_the_zipapp_is_byte_identical_from_the_same_sources(tmp_path):
    first = agent_zipapp()
    assert agent_zipapp() == first
    assert agent_zipapp(copy_sources(tmp_path)) == first, "file times or the folder must not change a byte"
    (tmp_path / "a.pyz").write_bytes(first)
    with zipfile.ZipFile(tmp_path / "a.pyz") as archive:
        names = archive.namelist()
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
    assert names == sorted(names) and "__main__.py" in names
    assert {"edgeclip/flash/agent.py", "edgeclip/flash/tty.py", "edgeclip/formats/bundle.py", "edgeclip/errors.py",
            "edgeclip/__init__.py", "edgeclip/flash/__init__.py"} <= set(names)
    assert not {"edgeclip/flash/host.py", "edgeclip/cli/flash.py", "edgeclip/bundle/build.py"} & set(names)


@pytest.mark.parametrize(
    "module, line, imported",
    [
        ("flash/tty.py", "import numpy as np\n", "numpy"),
        ("flash/install.py", "\n\ndef later():\n    from edgeclip.bundle import build\n", "edgeclip.bundle"),
        ("formats/layout.py", "\n\ndef later():\n    from ..models import towers\n", "edgeclip.models"),
        ("flash/agent.py", "import tqdm\n", "tqdm"),
    ],
)
def test_an_import_the_device_cannot_have_is_refused(tmp_path, module, line, imported):
    package = copy_sources(tmp_path)
    path = package / module
    path.write_text(path.read_text() + line)
    with pytest.raises(BundleError, match=rf"{module}:\d+ imports {imported}, but the device agent may import only"):
        agent_zipapp(package)


def test_a_bare_python_runs_the_zipapp(bare, tmp_path):
    python, _ = bare
    for heavy in ("serial", "numpy", "torch", "tvm", "edgeclip"):
        probe = subprocess.run([str(python), "-c", f"import {heavy}"], capture_output=True, cwd=tmp_path)
        assert probe.returncode != 0, f"the bare venv must not have {heavy}"
    helped = run_bare(bare, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "serial" in helped.stdout and "list" in helped.stdout
    assert "--dir" in run_bare(bare, "serial", "--help", cwd=tmp_path).stdout
    assert json.loads(run_bare(bare, "list", "--dir", str(tmp_path / "none"), cwd=tmp_path).stdout) == {}


def test_without_pyserial_a_url_or_an_odd_rate_is_refused_naming_the_fix(bare, tmp_path):
    url = run_bare(bare, "serial", "--port", "socket://127.0.0.1:9", "--dir", str(tmp_path / "d"), cwd=tmp_path)
    assert url.returncode == 2 and "pyserial URL but pyserial is not installed" in url.stderr
    master, slave, port = flash_rig.open_pty()
    try:
        odd = run_bare(bare, "serial", "--port", port, "--baud", "123457", "--dir", str(tmp_path / "d"), cwd=tmp_path)
    finally:
        os.close(master)
        os.close(slave)
    assert odd.returncode == 2 and "123457 baud has no termios constant" in odd.stderr


def test_the_bare_zipapp_receives_over_a_pty_through_termios(rigs, bare, big, small):
    python, app = bare
    rig = rigs(agent=(str(python), str(app)))
    rig.start_relay(corrupt=0.03, seed=5)
    big_path, big_files = big
    result = rig.flash(big_path, timeout=0.25)
    assert result.retries > 0 and result.installed == f"bigmodel/versions/{sha256(big_path)[:12]}"
    assert_installed(rig.dir, big_path, big_files, "bigmodel")
    again = rig.flash(big_path, timeout=0.25, retries=8)
    assert again.already_current and again.bytes_sent == 0
    rig.assert_agent_alive()
    assert "pyserial" not in rig.agent_log.read_text()


def test_the_bare_zipapp_serves_tcp_and_lists_what_it_installed(bare, small, tmp_path):
    python, app = bare
    device = tmp_path / "device"
    with listening_agent(device, agent=(str(python), str(app)), cwd=tmp_path) as url:
        small_path, small_files = small
        flash(small_path, url, progress=False)
    assert_installed(device, small_path, small_files, "smallmodel")
    listed = json.loads(run_bare(bare, "list", "--dir", str(device), cwd=tmp_path).stdout)
    assert listed == {"smallmodel": {"current": sha256(small_path)[:12], "previous": None,
                                     "versions": [sha256(small_path)[:12]]}}


@pytest.mark.slow
def test_every_built_bundle_carries_the_agent(tiny_clip_rpi4_bundle, bare, tmp_path):
    with tarfile.open(tiny_clip_rpi4_bundle) as tar:
        carried = tar.extractfile(MEMBER).read()
    assert carried == agent_zipapp() == bare[1].read_bytes()
    (tmp_path / "carried.pyz").write_bytes(carried)
    done = subprocess.run([str(bare[0]), str(tmp_path / "carried.pyz"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "edgeclip-agent" in done.stdout
