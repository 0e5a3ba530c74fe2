"""`edgeclip classify | embed | tokenize BUNDLE`: the bundle runner's application modes run on this
host from real x86-64 bundles of a tiny ternary CLIP. The runner's answers are checked against the
host-preprocessing path (`local.classify_images`, `local.tower_outputs`: Python preprocessing and
tokenizer, the same compiled modules), the baked labels against the stored embeddings, and every
refusal is one line.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgeclip.bundle import local
from edgeclip.bundle.model_info import manifest_family
from edgeclip.cli import main
from edgeclip.formats.bundle import read_manifest, variant_towers

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the bundles here are built for x86-64")

LABELS = ["a cat", "a dog", "a red car", "an airplane"]
PROMPT = "a photo of a {}"


@pytest.fixture(scope="module")
def bundle(tiny_clip_ternary, tmp_path_factory):
    """Both towers, the fp32 baseline, and the labels baked in."""
    from edgeclip.bundle.build import build_bundle

    return build_bundle(tiny_clip_ternary, "x86-64-v3", tmp_path_factory.mktemp("device-verbs"), baseline="fp32",
                        labels=LABELS, prompt=PROMPT)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three seeded noise PNGs of different sizes (PNGs: the runner's decoding matches the host's exactly)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    paths = []
    for i, shape in enumerate([(40, 50, 3), (33, 33, 3), (64, 20, 3)]):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return paths


def _lines(capsys, argv) -> list[dict]:
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _edgeclip(*argv):
    return subprocess.run([sys.executable, "-m", "edgeclip.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.reshape(rows.shape[0], -1).astype(np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _host_pixels(bundle, path) -> np.ndarray:
    from edgeclip.bundle.model_info import read_image

    manifest = read_manifest(bundle)
    return manifest_family(manifest).image.pixels(read_image(path), manifest["preprocessing"])


def test_classify_with_labels_agrees_with_host_preprocessing(bundle, images, capsys):
    labels = ["a cat", "a tree", "a bicycle"]
    rows = _lines(capsys, ["classify", str(bundle), "--image", *map(str, images), "--labels", ",".join(labels),
                           "--top", "3"])
    assert [row["image"] for row in rows] == [str(p) for p in images]  # one line per image, in order
    host = local.classify_images(bundle, images, labels)
    clear = 0
    for row, ranked in zip(rows, host, strict=True):
        device = {item["label"]: item["p"] for item in row["top"]}
        assert set(device) == set(labels) and abs(sum(device.values()) - 1) < 1e-3
        for label, p in ranked:
            assert abs(device[label] - p) <= 1e-3, (row["image"], label, device[label], p)
        if ranked[0][1] - ranked[1][1] > 0.05:  # a clear margin: the same winner, listed first
            clear += 1
            assert row["top"][0]["label"] == ranked[0][0]
    assert clear >= 1, f"no image with a clear margin to compare top-1 on: {host}"


def test_classify_without_labels_uses_the_baked_ones_with_no_text_tower(baked_labels_bundle, images, capsys):
    baked = baked_labels_bundle
    assert "text" not in variant_towers(read_manifest(baked.path))["ternary"]
    rows = _lines(capsys, ["classify", str(baked.path), "--image", str(images[0]), "--top", "2"])
    (row,) = rows
    assert len(row["top"]) == 2 and {item["label"] for item in row["top"]} <= set(baked.labels)
    # The same ranking from the stored embeddings and the image tower's output for host-preprocessed pixels.
    with local.extracted(baked.path) as (folder, manifest):
        stored = np.load(folder / manifest["labels"]["embeddings"]).astype(np.float64)
    image = local.tower_outputs(baked.path, {"image": [(_host_pixels(baked.path, images[0]),)]})["image"][0]
    logits = 100.0 * stored @ _unit(image)[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:2]
    assert [item["label"] for item in row["top"]] == [baked.labels[i] for i in order]
    np.testing.assert_allclose([item["p"] for item in row["top"]], probs[order], atol=1e-3)


def test_embed_images_to_npy_and_text_to_json_lines(bundle, images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --out is relative: it means the caller's folder, not the runner's
    (line,) = _lines(capsys, ["embed", str(bundle), "--image", str(images[0].parent), "--out", "out.npy", "--batch", "8"])
    assert line == {"out": str(tmp_path / "out.npy"), "count": len(images), "dim": 32}
    saved = np.load(tmp_path / "out.npy")
    assert saved.dtype == np.float32 and saved.shape == (len(images), 32)
    host = local.tower_outputs(bundle, {"image": [(_host_pixels(bundle, p),) for p in sorted(images)]})["image"]
    cosines = np.sum(saved.astype(np.float64) * _unit(np.concatenate(host)), axis=1)
    assert cosines.min() >= 0.9999, cosines

    rows = _lines(capsys, ["embed", str(bundle), "--text", "a cat", "--text", "a red car"])
    assert [row["text"] for row in rows] == ["a cat", "a red car"]
    for row in rows:
        expected = _unit(local.embed_text(bundle, row["text"]))[0]
        assert float(np.asarray(row["embedding"]) @ expected) >= 0.9999


def test_tokenize_gives_the_host_tokenizers_ids(bundle, capsys):
    texts = ["a photo of a cat", "Hello, world! naïve café", ""]
    rows = _lines(capsys, ["tokenize", str(bundle), *[arg for text in texts for arg in ("--text", text)]])
    manifest = read_manifest(bundle)
    tokenize = manifest_family(manifest).text.tokenizer(manifest_family(manifest).text.installed_vocab(),
                                                        manifest["tokenizer"])
    assert len(rows) == len(texts)
    for text, row in zip(texts, rows, strict=True):
        ids, mask = tokenize(text)
        assert row["ids"] == ids[0].tolist() and row["mask"] == mask[0].tolist(), text


@pytest.mark.parametrize(("verb", "flags"), [("classify", ["--image", "--labels", "--labels-file", "--top"]),
                                             ("embed", ["--image", "--text", "--text-file", "--out", "--batch"]),
                                             ("tokenize", ["--text", "--text-file", "--emulate"]),
                                             ("index", ["--text-file", "--image", "--out", "--encoding", "--host"]),
                                             ("search", ["--index", "--query", "--image", "--k", "--rerank"])])
def test_each_verb_has_help(verb, flags, capsys):
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: edgeclip {verb}") and all(flag in text for flag in flags)


def test_bad_input_is_one_line_naming_it(bundle, baked_labels_bundle, tmp_path):
    missing = tmp_path / "missing.png"
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    for argv, fragment in [
        (["classify", bundle, "--image", missing, "--labels", "a,b"], str(missing)),
        (["classify", bundle, "--image", not_image, "--labels", "a,b"], str(not_image)),
        (["embed", bundle, "--image", missing], str(missing)),
        (["classify", baked_labels_bundle.path, "--image", not_image], str(not_image)),
    ]:
        done = _edgeclip(*argv)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"edgeclip {argv[0]}: error: the bundle runner's {argv[0]} failed (exit 3)"), line
        assert fragment in line, line


def test_run_refuses_image_and_points_to_classify(bundle, capsys):
    assert main(["run", str(bundle), "--image", "x.png"]) == 1
    line = capsys.readouterr().err.strip()
    assert "`edgeclip run` only profiles" in line and "edgeclip classify BUNDLE --image" in line, line


@pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="emulating rpi4 needs qemu-aarch64 (apt: qemu-user)")
def test_an_aarch64_bundle_classifies_under_emulate_only(tiny_clip_rpi4_bundle, images, capsys):
    labels = ["a cat", "a tree"]
    argv = ["classify", str(tiny_clip_rpi4_bundle), "--image", str(images[0]), "--labels", ",".join(labels)]
    assert main(argv) == 1
    assert "pass --emulate to run it under qemu-user" in capsys.readouterr().err
    (row,) = _lines(capsys, [*argv, "--emulate"])
    (host,) = local.classify_images(tiny_clip_rpi4_bundle, images[:1], labels, emulate=True)
    device = {item["label"]: item["p"] for item in row["top"]}
    assert set(device) == set(labels)
    np.testing.assert_allclose([device[label] for label, _ in host], [p for _, p in host], atol=1e-3)
