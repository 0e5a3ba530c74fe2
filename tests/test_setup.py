"""scripts/system-deps: what `make demo` and `make test` install before anything else runs."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "system-deps"
BASH = shutil.which("bash")


def _run(*groups, env=None, user=None):
    command = [BASH, str(SCRIPT), *groups]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_a_machine_that_has_everything_installs_nothing_at_once():
    began = time.perf_counter()
    done = _run("test", "demo")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert time.perf_counter() - began < 1.0


def test_groups_are_checked_and_unknown_ones_refused():
    done = _run("everything")
    assert done.returncode == 2 and "unknown group 'everything'" in done.stderr


def test_without_apt_it_names_what_to_install_by_hand(tmp_path):
    # Bash builtins only on PATH: no apt-get. The fortunes proof points at an empty folder.
    done = _run("test", env={"PATH": str(tmp_path), "EDGECLIP_FORTUNES": str(tmp_path)})
    assert done.returncode == 1
    assert "no apt-get" in done.stderr and "fortunes: the fortune files" in done.stderr
    assert "dataset-fashion-mnist" not in done.stderr, "only the missing package is named"


def test_the_demo_does_not_need_the_test_only_packages(tmp_path):
    done = _run("demo", env={"PATH": str(tmp_path), "EDGECLIP_FORTUNES": str(tmp_path)})
    assert done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run the script as an unprivileged user")
def test_an_unprivileged_user_gets_the_exact_sudo_line(tmp_path):
    tmp_path.chmod(0o755)
    done = _run("test", env={"EDGECLIP_FORTUNES": str(tmp_path)}, user=65534)
    assert done.returncode == 1
    assert "  sudo apt-get install --no-install-recommends fortunes\n" in done.stderr
