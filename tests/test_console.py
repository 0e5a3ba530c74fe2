"""The quiet console: other libraries' noise goes to a log, edgeclip's own output and errors stay.

Run as real `edgeclip` processes, because what is tested is where file descriptor 2 goes.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from edgeclip.targets import load_target


def _edgeclip(*argv, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgeclip.cli", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _logs(cache):
    return sorted((cache / "logs").glob("*.log"))


def test_quiet_routes_descriptor_2_and_warnings_to_the_log(tmp_path):
    log, moved = tmp_path / "first.log", tmp_path / "run" / "log.txt"
    script = textwrap.dedent(f"""
        import os, sys, warnings
        from pathlib import Path
        from edgeclip import console
        with console.quiet(Path({str(log)!r})):
            os.write(2, b"[C++] Warning: fast mode\\n")
            warnings.warn("old API", FutureWarning)
            print("progress 1/2", file=console.stream())
            console.move_log(Path({str(moved)!r}))
            print("more noise", file=sys.stderr)
            print("progress 2/2", file=console.stream())
        print("after", file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "progress 1/2\nprogress 2/2\nafter\n"
    kept = moved.read_text()
    for line in ("[C++] Warning: fast mode", "FutureWarning: old API", "more noise"):
        assert line in kept
    assert not log.exists(), "the log moved into the run folder with what it held"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from model_fixtures import make_tiny_clip_dir

    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp("console")
    _, checkpoint = ternarize_source(str(make_tiny_clip_dir(root / "teacher")), TernaryConfig(), root / "tiny")
    return checkpoint


@pytest.mark.slow
def test_a_real_compile_keeps_tvm_warnings_off_the_console(tiny_checkpoint, tmp_path):
    cache = tmp_path / "cache"
    done = _edgeclip("compile", "--model", str(tiny_checkpoint), "--target", "x86-64", "--towers", "text",
                     "--out", str(tmp_path / "out"), env={"EDGECLIP_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr
    assert "text:" in done.stdout and "wrote" in done.stdout
    assert done.stderr == ""
    (log,) = _logs(cache)
    assert "Warning: Fast mode segfaults" in log.read_text(), "TVM's C++ warning went to the log"

    loud = _edgeclip("--verbose", "compile", "--model", str(tiny_checkpoint), "--target", "x86-64", "--towers",
                     "text", "--out", str(tmp_path / "out-loud"), env={"EDGECLIP_CACHE": str(cache)})
    assert loud.returncode == 0 and "Warning: Fast mode segfaults" in loud.stderr
    assert len(_logs(cache)) == 1, "--verbose writes no log"


def test_a_failing_build_still_prints_its_one_line_error(tiny_checkpoint, tmp_path):
    board = load_target("rpi4").source.read_text()
    board = board.replace('name = "rpi4"', 'name = "odd-board"').replace(
        'compiler = "aarch64-linux-gnu-g++"', 'compiler = "edgeclip-no-such-g++"')
    (tmp_path / "odd-board.toml").write_text(board)
    done = _edgeclip("build", "--model", str(tiny_checkpoint), "--target", "odd-board", "--out", str(tmp_path),
                     env={"EDGECLIP_TARGETS_DIR": str(tmp_path), "EDGECLIP_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("edgeclip build: error: ") and "edgeclip-no-such-g++" in line
