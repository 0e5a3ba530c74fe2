"""`edgeclip classify | embed | tokenize BUNDLE --host BOARD` against real sshd boards: the answers
equal the local verb's on the same bundle (with the caller's paths), `embed --out` comes back as the
same .npy, hostile file names stay literal, the board's run folder is gone afterwards, and an
undeployed bundle, an unknown host key or --emulate with --host is one line. The loopback board runs
a real x86-64 bundle; the emulated arm64 board the real rpi4 bundle under qemu."""

from __future__ import annotations

import io
import json
import platform
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from testbed import fixtures
from testbed.bundles import make_bundle
from testbed.fixtures import require

from edgeclip.cli import main
from edgeclip.formats.bundle import read_manifest, sha256_file
from edgeclip.formats.npy import NpyError, check_matrix
from edgeclip.remote.deploy import deploy
from edgeclip.testbed import devices, sshd

arm64 = fixtures.arm64

LABELS = ["a cat", "a dog", "a red car"]
HOSTILE = ["a b  c.png", "it's \"quoted\".png", "$(touch pwned).png", "`touch pwned2`;.PNG", "-rf.png"]


@pytest.fixture(scope="module")
def bundle(tiny_clip_ternary, tmp_path_factory):
    """Both towers and baked labels, for this host (the loopback board is this machine)."""
    from edgeclip.bundle.build import build_bundle

    if platform.machine() != "x86_64":
        pytest.skip("the loopback board runs the x86-64 bundle")
    return build_bundle(tiny_clip_ternary, "x86-64-v3", tmp_path_factory.mktemp("remote-modes"), labels=LABELS)


@pytest.fixture(scope="module")
def board(bundle, tmp_path_factory):
    """A loopback board with the bundle deployed, shared by the module's tests."""
    require(sshd.missing_capability())
    with devices.loopback_device(tmp_path_factory.mktemp("board")) as device:
        deploy(bundle, device.spec, device.options())
        yield device


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of seeded noise images under hostile names (PNGs and one JPEG), and a text file."""
    folder = tmp_path_factory.mktemp("in put's $(x)")
    rng = np.random.default_rng(3)
    for i, name in enumerate(HOSTILE):
        Image.fromarray(rng.integers(0, 256, (30 + 7 * i, 40, 3), dtype=np.uint8)).save(folder / name, format="PNG")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / "photo.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image, not sent")
    return folder


def ssh_args(device) -> list[str]:
    return ["--host", device.spec, "--known-hosts", str(device.known_hosts), "--ssh-config", "/dev/null",
            "--no-agent", "-i", str(device.identity), "--retries", "0"]


def rows(capsys, argv) -> list[dict]:
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def local_and_remote(capsys, device, argv) -> tuple[list[dict], list[dict]]:
    return rows(capsys, argv), rows(capsys, [*argv, *ssh_args(device)])


def left_on(device) -> list[str]:
    """What a remote run may leave in the board's staging folder: nothing."""
    staging = device.home / ".edgeclip" / ".staging"
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def no_pwned(*roots) -> None:
    found = subprocess.run(["find", *map(str, roots), "-name", "pwned*"], capture_output=True, text=True).stdout
    assert found == ""


def edgeclip(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=120)


def test_classify_on_the_board_equals_the_local_run_with_hostile_names(bundle, board, images, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)  # a `$(touch pwned)` that ran would leave its file here or in the board's home
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    labels = tmp_path / "label's $(list).txt"
    labels.write_text("a cat\na tree\na bicycle\n")
    argv = ["classify", bundle, "--image", *files, "--labels-file", labels, "--prompt", "a photo of {}", "--top", "2"]
    here, there = local_and_remote(capsys, board, argv)
    assert [row["image"] for row in there] == [str(p) for p in files]
    assert len(files) == len(HOSTILE) + 1
    for mine, theirs in zip(here, there, strict=True):
        assert mine["image"] == theirs["image"] and [t["label"] for t in mine["top"]] == [t["label"] for t in theirs["top"]]
        np.testing.assert_allclose([t["p"] for t in theirs["top"]], [t["p"] for t in mine["top"]], atol=1e-6)
    (baked,) = rows(capsys, ["classify", bundle, "--image", files[0], *ssh_args(board)])
    assert {t["label"] for t in baked["top"]} == set(LABELS)
    assert left_on(board) == []
    no_pwned(tmp_path, board.home, images)


def test_embed_a_folder_to_npy_round_trips(bundle, board, images, tmp_path, capsys):
    (mine,) = rows(capsys, ["embed", bundle, "--image", images, "--out", tmp_path / "here.npy"])
    (theirs,) = rows(capsys, ["embed", bundle, "--image", images, "--out", tmp_path / "there.npy", *ssh_args(board)])
    assert theirs == {**mine, "out": str(tmp_path / "there.npy")} and mine["count"] == len(HOSTILE) + 1
    here, there = np.load(tmp_path / "here.npy"), np.load(tmp_path / "there.npy")
    assert there.dtype == np.float32 and there.shape == here.shape
    np.testing.assert_allclose(there, here, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.npy", "there.npy"]  # no partial file left
    assert left_on(board) == []


def test_embed_texts_and_tokenize_equal_the_local_run(bundle, board, tmp_path, capsys):
    texts = tmp_path / "texts $(x).txt"
    texts.write_text("a photo of a cat\n\nnaïve café 'quoted' $(touch pwned)")  # a blank line, no final newline
    for verb in ("embed", "tokenize"):
        argv = [verb, bundle, "--text", "a dog", "--text-file", texts, "--text", "`touch pwned`"]
        here, there = local_and_remote(capsys, board, argv)
        assert len(there) == 5 and there[:1] == here[:1]
        if verb == "tokenize":
            assert there == here
        for mine, theirs in zip(here, there, strict=True):
            assert theirs.get("text") == mine.get("text")
            np.testing.assert_allclose(theirs.get("embedding", 0), mine.get("embedding", 0), atol=1e-6)
    (line,) = rows(capsys, ["embed", bundle, "--text-file", texts, "--out", tmp_path / "t.npy", *ssh_args(board)])
    assert line == {"out": str(tmp_path / "t.npy"), "count": 3, "dim": 32} and np.load(tmp_path / "t.npy").shape == (3, 32)
    assert left_on(board) == []
    no_pwned(tmp_path, board.home)


def test_a_runner_failure_is_one_line_naming_the_local_file_and_cleans_up(bundle, board, images, tmp_path):
    broken = tmp_path / "broken $(x).png"
    broken.write_text("not an image")
    done = edgeclip("classify", bundle, "--image", broken, "--labels", "a,b", *ssh_args(board))
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"edgeclip classify: error: the bundle runner's classify failed on {board.spec} (exit 3)")
    assert str(broken) in line and ".staging" not in line, line
    empty = tmp_path / "empty"
    empty.mkdir()
    done = edgeclip("embed", bundle, "--image", empty, *ssh_args(board))
    assert done.returncode == 1 and f"the folder {empty} has no .jpg" in done.stderr, done.stderr
    done = edgeclip("embed", bundle, "--image", tmp_path / "missing.png", *ssh_args(board))
    assert done.returncode == 1 and f"cannot read {tmp_path / 'missing.png'} (no such file)" in done.stderr
    assert left_on(board) == []


def test_an_undeployed_other_or_damaged_bundle_says_to_deploy(bundle, images, tmp_path, capsys):
    require(sshd.missing_capability())
    version = sha256_file(bundle)[:12]
    argv = ["classify", bundle, "--image", sorted(images.glob("*.jpg"))[0]]
    with devices.loopback_device(tmp_path / "fresh") as device:
        deploy_line = f"run `edgeclip deploy {bundle} --host {device.spec}`"
        assert main([*map(str, argv), *ssh_args(device)]) == 1
        line = capsys.readouterr().err.strip()
        assert line == f"edgeclip classify: error: {device.spec}: tiny-clip is not installed there; {deploy_line} first"
        other = deploy(make_bundle(tmp_path / "other.edgeclip", name=read_manifest(bundle)["name"]), device.spec,
                       device.options())
        assert main([*map(str, argv), *ssh_args(device)]) == 1
        line = capsys.readouterr().err.strip()
        assert f"the installed tiny-clip is version {other.version}, not this bundle's {version}; {deploy_line}" in line
        deploy(bundle, device.spec, device.options())
        members = device.home / ".edgeclip" / "tiny-clip" / "versions" / version
        (members / "labels" / "names.txt").write_text("tampered\n")  # damaged on the board
        assert main([*map(str, argv), *ssh_args(device)]) == 1
        assert f"the installed copy of tiny-clip {version} is damaged" in capsys.readouterr().err
        assert left_on(device) == []


def test_unknown_host_key_is_refused_before_anything_is_sent(bundle, images, tmp_path, capsys):
    require(sshd.missing_capability())
    with devices.loopback_device(tmp_path / "d", trusted=False) as device:
        assert main(["tokenize", str(bundle), "--text", "hi", *ssh_args(device)]) == 1
        line = capsys.readouterr().err.strip()
        assert "unknown host key" in line and "--trust-new-host" in line and not device.known_hosts.exists()
        assert not (device.home / ".edgeclip").exists()


def test_emulate_with_host_is_refused(bundle, capsys):
    assert main(["tokenize", str(bundle), "--text", "hi", "--emulate", "--host", "pi4"]) == 1
    assert "--emulate runs the bundle here under qemu-user and --host runs it on the board" in capsys.readouterr().err


def _npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


@pytest.mark.parametrize(("data", "fragment"), [
    (_npy(np.zeros((3, 4), np.float32))[:-4], "not the 176 its header says"),
    (_npy(np.zeros((3, 4), np.float32)) + b"x", "not the 176 its header says"),
    (_npy(np.zeros((4, 3), np.float32)), "shape is (4, 3), not (3, 4)"),
    (_npy(np.zeros((3, 4), np.float64)), "'<f8'"),
    (_npy(np.asfortranarray(np.zeros((3, 4), np.float32))), "Fortran order True"),
    (b"\x93NUMPY\x01\x00\xff\xff{}", "past the end"),
    (b"PK\x03\x04 not npy", "magic"),
])
def test_a_fetched_npy_must_be_the_announced_matrix(data, fragment):
    check_matrix(_npy(np.zeros((3, 4), np.float32)), 3, 4)
    with pytest.raises(NpyError) as refused:
        check_matrix(data, 3, 4)
    assert fragment in str(refused.value)


@pytest.mark.slow
def test_classify_on_the_emulated_arm64_board_gives_the_emulated_local_labels(tiny_clip_rpi4_bundle, arm64, images,
                                                                            capsys):
    """The issue's done-when: `classify --host` on the emulated board returns the local run's labels."""
    device, _ = arm64
    deploy(tiny_clip_rpi4_bundle, device.spec, device.options())
    files = sorted(images.glob("*.jpg"))[:1] + sorted(images.glob("*.png"))[:1]
    argv = ["classify", tiny_clip_rpi4_bundle, "--image", *files, "--labels", "a cat,a dog,a tree"]
    here, there = rows(capsys, [*argv, "--emulate"]), rows(capsys, [*argv, *ssh_args(device)])
    assert [row["image"] for row in there] == [str(p) for p in files]
    for mine, theirs in zip(here, there, strict=True):
        assert [t["label"] for t in theirs["top"]] == [t["label"] for t in mine["top"]]
        np.testing.assert_allclose([t["p"] for t in theirs["top"]], [t["p"] for t in mine["top"]], atol=1e-6)
    assert left_on(device) == []


LYING_RUNNER = r"""#!/bin/sh
# TEST STAND-IN: a runner whose `embed --out` answer does not match what it wrote.
out=
while [ $# -gt 0 ]; do case $1 in --out) out=$2; shift 2 ;; *) shift ;; esac; done
WRITE
printf '{"out": "%s", "count": COUNT, "dim": 4}\n' "$out"
"""


@pytest.mark.parametrize(("write", "count", "fragment"), [
    ("printf 'not an npy' > \"$out\"", 1, "is not a float32 [1, 4] .npy (it does not start with the .npy magic)"),
    ("head -c 100000 /dev/zero > \"$out\"", 1, "is 100000 bytes, over the 65564 that 1 x 4 float32 take"),
    ("printf x > \"$out\"", 2, "answered {'out': "),
], ids=["not an npy", "over the bound", "wrong count"])
def test_a_fetched_out_file_that_is_not_the_announced_matrix_is_refused(board, tmp_path, write, count, fragment):
    runner = LYING_RUNNER.replace("WRITE", write).replace("COUNT", str(count))
    liar = make_bundle(tmp_path / "liar.edgeclip", name="liar", runner=runner)
    deploy(liar, board.spec, board.options())
    done = edgeclip("embed", liar, "--text", "hi", "--out", tmp_path / "e.npy", *ssh_args(board))
    assert done.returncode == 1 and fragment in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and not (tmp_path / "e.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["liar.edgeclip"] and left_on(board) == []


def test_index_on_the_board_and_search_with_the_index_sent_equal_the_local_run(bundle, board, images, tmp_path,
                                                                                capsys):
    """`index --host` embeds on the board and fetches the index: the same bytes as the local one
    (the same runner), image paths put back as the caller's; `search --host` sends it and answers
    as the local search does."""
    texts = tmp_path / "notes.txt"
    texts.write_text("a cat on a mat\nrockets to the moon\n\na red car\n", encoding="utf-8")
    for flag, value, name in (("--text-file", texts, "text"), ("--image", images, "image")):
        (mine,) = rows(capsys, ["index", bundle, flag, value, "--out", tmp_path / f"{name}-here.index"])
        (theirs,) = rows(capsys, ["index", bundle, flag, value, "--out", tmp_path / f"{name}-there.index",
                                  *ssh_args(board)])
        assert theirs == {**mine, "out": str(tmp_path / f"{name}-there.index")}
        assert (tmp_path / f"{name}-there.index").read_bytes() == (tmp_path / f"{name}-here.index").read_bytes()
    query = ["search", bundle, "--index", tmp_path / "image-there.index", "--query", "a cat", "--k", "3"]
    mine, theirs = local_and_remote(capsys, board, query)
    assert [r["results"] for r in theirs] == [r["results"] for r in mine]
    assert str(images) in mine[0]["results"][0]["path"] and left_on(board) == []
