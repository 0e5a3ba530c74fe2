"""Hostile or mistaken input to the local verbs: inputs are never overwritten, only a verified
bundle member is ever run, non-finite models are refused, `run` refuses the flags of the verbs that
took over its old modes, and `build --labels` refuses a bad label list or prompt before compiling.

One table: the case, the real `edgeclip` command it runs, the message fragment it must print as
its one-line error, and what must still hold on disk afterwards.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hostile import manifest_of, small_bundle, with_manifest
from model_fixtures import make_tiny_clip_dir

from edgeclip.models.families import family_of
from edgeclip.models.model_io import load_model, save_model
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig


def _edgeclip(*argv):
    return subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A teacher, its ternary checkpoint, a NaN-scaled checkpoint, a NaN teacher, a hostile bundle."""
    root = tmp_path_factory.mktemp("faults")
    teacher = make_tiny_clip_dir(root / "teacher")
    _, checkpoint = ternarize_source(str(teacher), TernaryConfig(), root / "student")
    model, config = load_model(checkpoint)
    with torch.no_grad():
        next(b for n, b in model.named_buffers() if n.endswith("scales")).fill_(float("nan"))
    nan_checkpoint = save_model(model, root / "nan-student", family_of(model), config["arch"], TernaryConfig())
    nan_teacher = make_tiny_clip_dir(root / "nan-teacher")
    from transformers import CLIPModel

    broken = CLIPModel.from_pretrained(nan_teacher)
    with torch.no_grad():
        broken.visual_projection.weight[0, 0] = float("inf")
    broken.save_pretrained(nan_teacher)
    marker = root / "evil-ran"
    evil = root / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\n")
    evil.chmod(0o755)
    honest = small_bundle(root / "honest.edgeclip")
    hostile = with_manifest(honest, root / "hostile.edgeclip", {**manifest_of(honest), "runner": str(evil)})
    (root / "a-file").write_text("not a folder")
    return {"root": root, "teacher": teacher, "checkpoint": checkpoint, "nan_checkpoint": nan_checkpoint,
            "nan_teacher": nan_teacher, "hostile": hostile, "marker": marker}


CASES = [
    # (case, argv with {placeholders}, message fragment, what must be unchanged)
    ("ternarize into the teacher's own folder", ["ternarize", "--model", "{teacher}", "--out", "{teacher}"],
     "already holds a model", "teacher"),
    ("ternarize over an existing checkpoint", ["ternarize", "--model", "{teacher}", "--out", "{checkpoint}"],
     "pass --force to replace it", "checkpoint"),
    ("train over an existing checkpoint", ["train", "--teacher", "{teacher}", "--out", "{checkpoint}", "--steps", "1"],
     "already holds a model", "checkpoint"),
    ("build -o names a file", ["build", "--model", "{checkpoint}", "--target", "x86-64", "-o", "{root}/a-file"],
     "exists and is not a directory", "checkpoint"),
    ("a checkpoint with NaN scales", ["inspect", "{nan_checkpoint}"], "hold NaN or infinite values", "nan_checkpoint"),
    ("a teacher with an infinite weight", ["ternarize", "--model", "{nan_teacher}", "--out", "{root}/out-nan"],
     "hold NaN or infinite values", "nan_teacher"),
    ("a manifest naming a runner outside the bundle", ["run", "{hostile}"], "not a member the bundle lists",
     None),
    ("run --image (classify's now)", ["run", "{hostile}", "--image", "x.png", "--labels", "a,b"],
     "`edgeclip run` only profiles; --image belongs to `edgeclip classify BUNDLE --image ...`", None),
    ("run --text (embed's now)", ["run", "{hostile}", "--text", "a cat", "--runs", "3"],
     "--text belongs to `edgeclip embed", None),
    ("classify with a hostile runner", ["classify", "{hostile}", "--image", "x.png"], "not a member the bundle lists",
     None),
    ("build --labels with no label", ["build", "--model", "{checkpoint}", "--target", "x86-64", "--labels", " , ,",
                                      "-o", "{root}/out-labels"], "--labels ' , ,' names no label", "checkpoint"),
    ("build --labels with a duplicate", ["build", "--model", "{checkpoint}", "--target", "x86-64", "--labels",
                                         "a cat,a dog,a cat", "-o", "{root}/out-labels"], "names 'a cat' twice",
     "checkpoint"),
    ("build --prompt with two slots", ["build", "--model", "{checkpoint}", "--target", "x86-64", "--labels", "a,b",
                                       "--prompt", "{{}} or {{}}", "-o", "{root}/out-labels"], "exactly one {}",
     "checkpoint"),
    ("build --prompt without --labels", ["build", "--model", "{checkpoint}", "--target", "x86-64", "--prompt",
                                         "a {{}}", "-o", "{root}/out-labels"], "--prompt goes with --labels",
     "checkpoint"),
]


@pytest.mark.parametrize(("case", "argv", "fragment", "kept"), CASES, ids=[c[0] for c in CASES])
def test_a_refused_input_says_why_and_changes_nothing(world, case, argv, fragment, kept):
    before = _digest(Path(world[kept])) if kept else None
    done = _edgeclip(*(a.format(**world) for a in argv))
    assert done.returncode == 1, (case, done.stdout, done.stderr)
    (line,) = done.stderr.splitlines()
    assert line.startswith("edgeclip ") and ": error: " in line and fragment in line, line
    if kept:
        assert _digest(Path(world[kept])) == before, f"{case}: {kept} changed"
    assert not world["marker"].exists(), "a path the manifest named was executed"
    assert not (world["root"] / "out-nan").exists() and not (world["root"] / "out-labels").exists()


def test_force_replaces_a_checkpoint_whole(world, tmp_path):
    out = tmp_path / "again"
    assert _edgeclip("ternarize", "--model", world["teacher"], "--out", out).returncode == 0
    first = _digest(out)
    done = _edgeclip("ternarize", "--model", world["teacher"], "--out", out, "--policy", "q-ffn", "--force")
    assert done.returncode == 0, done.stderr
    assert _digest(out) != first and set(_digest(out)) == set(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"], "no temporary folder is left beside it"


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    """A 30000x30000 PNG (a few KB on disk, 2.7 GB decoded) and a 9000x9000 one (over edgeclip's own
    64-megapixel limit) are refused from their headers, before decoding."""
    import zlib

    from edgeclip.bundle.model_info import read_image
    from edgeclip.errors import BundleError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    def png(side: int) -> Path:
        header = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
        rows = zlib.compress(b"\0" * (1 + 3 * side) * 64)  # only the first rows: the rest is never read
        path = tmp_path / f"{side}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
        return path

    with pytest.raises(BundleError, match="is over the 64 megapixel limit"):
        read_image(png(30000))
    with pytest.raises(BundleError, match="9000x9000, over the 64 megapixel limit"):
        read_image(png(9000))
