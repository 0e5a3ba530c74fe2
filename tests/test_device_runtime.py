"""libedgeclip.so and the runner's modes on it (classify, embed, tokenize; bench, preprocess), on a
real host bundle of a tiny CLIP with both towers: embeddings equal the towers' own outputs (bench
on the same inputs), classification equals the host pipeline's, baked labels classify with no text
tower, every mode has --help, bad input is refused in one line with the documented exit status,
and the C example builds and runs, on the host and cross compiled for aarch64 under qemu."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from c_programs import link_against_bundle
from hostile import older_schema
from model_fixtures import make_tiny_clip_dir
from PIL import Image

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.cli import main
from edgeclip.errors import BundleError
from edgeclip.formats.manifest import SCHEMA_VERSION, check_manifest, variant_towers
from edgeclip.formats.runner_inputs import folder_images
from edgeclip.native import toolchain
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "classify.c"
MODES = ("bench", "classify", "embed", "tokenize", "index", "search", "serve", "preprocess")
LABELS = ["cat", "dog", "rocket ship"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    _, checkpoint = ternarize_source(str(make_tiny_clip_dir(root / "teacher")), TernaryConfig(), root / "ckpt")
    return build_bundle(checkpoint, "x86-64-v3", root / "bundles")


@pytest.fixture
def folder(bundle, tmp_path):
    """A writable extracted copy of the bundle (tests edit its plan)."""
    with local.extracted(bundle) as (extracted, _):
        shutil.copytree(extracted, tmp_path / "bundle", symlinks=True)
    return tmp_path / "bundle"


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for name, shape in (("b.png", (40, 56, 3)), ("A.jpg", (64, 48, 3)), ("c.JPEG", (30, 30, 3)), ("d.png", (33, 47))):
        paths.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return paths


def run(folder: Path, *args, code: int = 0, prefix=()) -> subprocess.CompletedProcess:
    done = subprocess.run([*prefix, str(folder / "bin" / "edgeclip-runner"), *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == code, done.stderr
    return done


def lines(done) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def bench_output(folder: Path, tower: str, arrays: list[np.ndarray], tmp_path: Path) -> np.ndarray:
    """The tower's own output for these inputs, through today's measuring mode."""
    paths = []
    for i, array in enumerate(arrays):
        paths.append(tmp_path / f"{tower}-in{i}.npy")
        np.save(paths[-1], array)
    run(folder, "bench", "--variant", "ternary", "--tower", tower, "--runs", 1, "--warmup", 0,
        "--input", f"{tower}={','.join(map(str, paths))}", "--save-outputs", tmp_path)
    return np.load(tmp_path / f"ternary-{tower}.npy")


def test_every_mode_has_help_and_no_mode_is_a_usage_error(folder):
    listing = run(folder, "--help").stdout
    for mode in MODES:
        assert f"  {mode} " in listing
        assert run(folder, mode, "--help").stdout.startswith(f"usage: edgeclip-runner {mode} ")
    done = run(folder, code=2)
    assert len(done.stderr.splitlines()) == 1 and "no mode given" in done.stderr


def test_tokenize_and_embed_text_equal_the_host_tokenizer_and_the_text_tower(folder, bundle, tmp_path):
    texts = ["a photo of a cat", "two dogs playing in the snow", ""]
    rows = lines(run(folder, "tokenize", *sum((["--text", t] for t in texts), [])))
    with local.extracted(bundle) as (extracted, manifest):
        host = local._tokenizer(extracted, manifest)
        assert [(r["ids"], r["mask"]) for r in rows] == [tuple(a[0].tolist() for a in host(t)) for t in texts]
    embedded = lines(run(folder, "embed", *sum((["--text", t] for t in texts), [])))
    assert [row["text"] for row in embedded] == texts
    for text, row, tokens in zip(texts, embedded, rows, strict=True):
        ids, mask = (np.array([tokens[key]], dtype=np.int64) for key in ("ids", "mask"))
        tower = unit(bench_output(folder, "text", [ids, mask], tmp_path))[0]
        assert np.linalg.norm(row["embedding"]) == pytest.approx(1.0, abs=1e-5)
        assert float(tower @ np.array(row["embedding"])) >= 0.999, text


def test_embed_image_equals_the_image_tower_on_the_preprocessed_pixels(folder, images, tmp_path):
    for image in images:
        run(folder, "preprocess", "--image", image, "--out", tmp_path / "pixels.npy")
        tower = unit(bench_output(folder, "image", [np.load(tmp_path / "pixels.npy")], tmp_path))[0]
        (row,) = lines(run(folder, "embed", "--image", image))
        assert row["image"] == str(image)
        assert float(tower @ np.array(row["embedding"])) >= 0.999, image.name


def test_embed_folder_is_its_images_in_name_order_and_out_writes_one_npy(folder, images, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # a folder with an image's name is no image
    (tmp_path / "sub.png" / "inner.png").write_bytes(images[0].read_bytes())
    one_by_one = lines(run(folder, "embed", "--image", *images))
    by_name = {Path(row["image"]).name: row["embedding"] for row in one_by_one}
    listed = lines(run(folder, "embed", "--image", tmp_path, images[0]))
    order = ["A.jpg", "b.png", "c.JPEG", "d.png"]  # byte order: upper case first
    assert [row["image"] for row in listed] == [str(tmp_path / n) for n in order] + [str(images[0])]
    assert folder_images(tmp_path) == order  # the host tools' mirror of the rule picks the same
    out = tmp_path / "all.npy"
    (summary,) = lines(run(folder, "embed", "--image", tmp_path, "--out", out))
    dim = len(one_by_one[0]["embedding"])
    assert summary == {"out": str(out), "count": 4, "dim": dim}
    saved = np.load(out)
    assert saved.dtype == np.float32 and saved.shape == (4, dim)
    np.testing.assert_allclose(saved, np.array([by_name[n] for n in order], dtype=np.float32), atol=1e-6)
    assert not list(tmp_path.glob("*.part"))


def test_classify_equals_the_host_pipeline(folder, bundle, images):
    png = images[0]
    prompt = "a photo of a {}"
    (row,) = lines(run(folder, "classify", "--image", png, "--labels", ", ".join(LABELS), "--prompt", prompt,
                       "--top", 10))
    assert row["image"] == str(png) and len(row["top"]) == len(LABELS)  # --top is capped at the label count
    probs = [entry["p"] for entry in row["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    host = local.classify(bundle, png, [prompt.format(label) for label in LABELS])
    assert [(prompt.format(e["label"]), pytest.approx(e["p"], abs=1e-3)) for e in row["top"]] == host
    (two,) = lines(run(folder, "classify", "--image", png, "--labels", ",".join(LABELS), "--prompt", prompt,
                       "--top", 2))
    assert two["top"] == row["top"][:2]


def _bake(folder: Path, labels: list[str], embeddings: np.ndarray) -> None:
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    np.save(folder / "labels.npy", embeddings)
    with open(folder / "runner.plan", "a", encoding="utf-8") as plan:
        plan.write("labels labels.txt labels.npy\n")


def test_baked_labels_classify_without_a_text_tower(folder, images, tmp_path):
    prompted = [f"a photo of a {label}" for label in LABELS]
    run(folder, "embed", *sum((["--text", t] for t in prompted), []), "--out", tmp_path / "text.npy")
    given = lines(run(folder, "classify", "--image", *images, "--labels", ",".join(LABELS),
                      "--prompt", "a photo of a {}"))
    done = run(folder, "classify", "--image", images[0], code=3)
    assert done.stderr.strip() == ("edgeclip-runner classify: this bundle has no baked labels; pass --labels or "
                                   "rebuild with edgeclip build --labels")
    _bake(folder, LABELS, np.load(tmp_path / "text.npy"))
    (folder / "modules" / "ternary" / "text.so").unlink()  # proves no text tower is loaded
    baked = lines(run(folder, "classify", "--image", *images))
    for a, b in zip(given, baked, strict=True):
        assert [e["label"] for e in a["top"]] == [e["label"] for e in b["top"]]
        np.testing.assert_allclose([e["p"] for e in a["top"]], [e["p"] for e in b["top"]], atol=1e-5)


@pytest.mark.parametrize("case", ["count", "dim", "dtype", "unnormalised", "empty-name"])
def test_bad_baked_labels_are_refused_in_one_line(folder, images, case):
    dim = len(lines(run(folder, "embed", "--text", "x"))[0]["embedding"])
    embeddings = unit(np.random.default_rng(0).normal(size=(3, dim))).astype(np.float32)
    labels = list(LABELS)
    if case == "count":
        embeddings = embeddings[:2]
    elif case == "dim":
        embeddings = unit(embeddings[:, :-1]).astype(np.float32)
    elif case == "dtype":
        embeddings = embeddings.astype(np.float64)
    elif case == "unnormalised":
        embeddings = embeddings * 2
    else:
        labels[1] = ""
    _bake(folder, labels, embeddings)
    done = run(folder, "classify", "--image", images[0], code=3)
    assert len(done.stderr.strip().splitlines()) == 1
    assert "baked label" in done.stderr and ("rebuild" in done.stderr or "1 to 256 bytes" in done.stderr)


def _huge_png(path: Path) -> Path:
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = (20000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
                     + chunk(b"IEND", b""))
    return path


BAD = {
    "missing image": (["classify", "--image", "{tmp}/nope.png", "--labels", "a"], 3, "cannot open the image"),
    "not an image": (["embed", "--image", "{tmp}/text.png"], 3, "is not a JPEG or PNG image"),
    "over the pixel limit": (["embed", "--image", "{tmp}/huge.png"], 3, "over the limit of"),
    "empty label list": (["classify", "--image", "{png}", "--labels", " "], 3, "the label list is empty"),
    "empty label": (["classify", "--image", "{png}", "--labels", "a,,b"], 3, "is not 1 to 256 bytes"),
    "long label": (["classify", "--image", "{png}", "--labels", "x" * 257], 3, "is not 1 to 256 bytes"),
    "bad prompt": (["classify", "--image", "{png}", "--labels", "a", "--prompt", "{} or {}"], 3,
                   "must contain {} exactly once"),
    "missing label file": (["classify", "--image", "{png}", "--labels-file", "{tmp}/none.txt"], 3,
                           "cannot read the text file"),
    "variant not built": (["embed", "--variant", "fp32", "--text", "a"], 3, "has no variant 'fp32'; it has ternary"),
    "empty folder": (["embed", "--image", "{tmp}/empty"], 3, "has no .jpg, .jpeg or .png files"),
    "NUL in a text file": (["tokenize", "--text-file", "{tmp}/nul.txt"], 3, "holds a NUL byte"),
    "prompt without labels": (["classify", "--image", "{png}", "--prompt", "a {}"], 2, "--prompt needs --labels"),
    "top zero": (["classify", "--image", "{png}", "--labels", "a", "--top", "0"], 2, "--top needs a whole number"),
    "two label sources": (["classify", "--image", "{png}", "--labels", "a", "--labels-file", "f"], 2, "not both"),
    "image and text": (["embed", "--image", "{png}", "--text", "a"], 2, "not both"),
    "nothing to embed": (["embed"], 2, "embed needs --image"),
    "unknown option": (["classify", "--image", "{png}", "--colour", "red"], 2, "unknown option --colour"),
    "missing value": (["embed", "--text"], 2, "--text needs a value"),
    "unknown variant": (["embed", "--variant", "int4", "--text", "a"], 3, "has no variant 'int4'; it has ternary"),
    "bad towers": (["serve", "--towers", "image,audio"], 2, "--towers takes image, text or image,text, not 'audio'"),
    "unknown mode": (["frobnicate"], 2, "unknown mode 'frobnicate'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_in_one_line(folder, images, tmp_path, case):
    args, code, message = BAD[case]
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "nul.txt").write_bytes(b"a\0b\n")
    (tmp_path / "empty").mkdir()
    _huge_png(tmp_path / "huge.png")
    done = run(folder, *(a.replace("{tmp}", str(tmp_path)).replace("{png}", str(images[0])) for a in args), code=code)
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not done.stdout


def _example_top1(folder: Path, binary: Path, image: Path, prefix=()) -> tuple[str, float]:
    done = subprocess.run([*prefix, str(binary), str(folder), str(image), *LABELS], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    label, p = done.stdout.strip().rsplit(" ", 1)
    failed = subprocess.run([*prefix, str(binary), str(folder), str(image) + ".missing", "cat"], capture_output=True,
                            text=True, timeout=600)
    assert failed.returncode == 1 and failed.stderr.startswith("classify: cannot open the image")
    return label, float(p)


def _runner_top1(folder: Path, image: Path, prefix=()) -> tuple[str, float]:
    (row,) = lines(run(folder, "classify", "--image", image, "--labels", ",".join(LABELS),
                       "--prompt", "a photo of a {}", "--top", 1, prefix=prefix))
    return row["top"][0]["label"], row["top"][0]["p"]


def _build_example(compiler: str, folder: Path) -> Path:
    return link_against_bundle(compiler, EXAMPLE, folder, "classify")


def test_c_example_builds_and_classifies_on_the_host(folder, images):
    binary = _build_example("gcc", folder)
    label, p = _example_top1(folder, binary, images[0])
    expected = _runner_top1(folder, images[0])
    assert label == expected[0] and p == pytest.approx(expected[1], abs=1e-4)


# Calls the API the runner does not: raw pixels (argv: bundle, raw file, width, height, channels),
# tokenize with too small a buffer, labels with a NULL prompt and a bad one.
PIXELS_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "edgeclip.h"
int main(int argc, char** argv) {
  (void)argc;
  edgeclip_model* m = edgeclip_open(argv[1], NULL, EDGECLIP_IMAGE | EDGECLIP_TEXT, 1);
  int w = atoi(argv[3]), h = atoi(argv[4]), c = atoi(argv[5]), dim = edgeclip_embedding_dim(m);
  unsigned char* px = malloc((size_t)w * h * c);
  FILE* f = fopen(argv[2], "rb");
  if (!m || !f || fread(px, 1, (size_t)w * h * c, f) != (size_t)w * h * c) return 1;
  float* e = malloc(sizeof(float) * dim);
  if (edgeclip_embed_pixels(m, px, w, h, c, e) != 0) { printf("error %s\n", edgeclip_last_error()); return 1; }
  for (int i = 0; i < dim; ++i) printf("%.9g\n", e[i]);
  long long ids[4];
  const char* labels[] = {"cat", "dog"};
  int status = edgeclip_tokenize(m, "a cat", ids, 4);
  fprintf(stderr, "%d %s\n", status, edgeclip_last_error());
  status = edgeclip_embed_pixels(m, px, w, h, 2, e);
  fprintf(stderr, "%d %s\n", status, edgeclip_last_error());
  status = edgeclip_set_labels(m, labels, 2, NULL);
  fprintf(stderr, "%d %d %s\n", status, edgeclip_label_count(m), edgeclip_label(m, 1));
  status = edgeclip_set_labels(m, labels, 2, "no slot");
  fprintf(stderr, "%d %s\n", status, edgeclip_last_error());
  edgeclip_close(m);
  return 0;
}
"""


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_embed_pixels_equals_embed_image_file(folder, tmp_path, mode):
    source = tmp_path / "pixels.c"
    source.write_text(PIXELS_C)
    binary = link_against_bundle("gcc", source, folder, "pixels")
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (45, 61, 3), dtype=np.uint8)).convert(mode)
    image.save(tmp_path / "photo.png")
    pixels = np.asarray(image)
    (tmp_path / "photo.raw").write_bytes(pixels.tobytes())
    done = subprocess.run([str(binary), str(folder), str(tmp_path / "photo.raw"), "61", "45",
                           "3" if mode == "RGB" else "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = lines(run(folder, "embed", "--image", tmp_path / "photo.png"))
    np.testing.assert_allclose(np.array(done.stdout.split(), dtype=np.float32), row["embedding"], atol=1e-6)
    assert done.stderr.splitlines() == [
        "-1 edgeclip_tokenize needs room for the context length, 77 ids",
        "-1 channels must be 1 (gray) or 3 (RGB)",
        "0 2 dog",
        "-1 the prompt 'no slot' must contain {} exactly once, where the label goes",
    ]


ALLOWED_NEEDED = {"libtvm_runtime.so", "libtvm_ffi.so", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6",
                  "ld-linux-aarch64.so.1"}


def test_aarch64_library_is_self_contained_and_the_c_example_runs_under_qemu(tiny_clip_rpi4_bundle, tmp_path):
    if shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("readelf") is None:
        pytest.skip("needs aarch64-linux-gnu-gcc and readelf")
    prefix = toolchain.emulator_command("aarch64")
    with local.extracted(tiny_clip_rpi4_bundle) as (extracted, _):
        shutil.copytree(extracted, tmp_path / "bundle", symlinks=True)
    folder = tmp_path / "bundle"
    library = folder / "lib" / toolchain.LIBRARY_NAME
    dynamic = subprocess.run(["readelf", "-d", "-h", str(library)], capture_output=True, text=True, check=True).stdout
    assert "AArch64" in dynamic and "Library runpath: [$ORIGIN]" in dynamic
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line}
    assert needed and needed <= ALLOWED_NEEDED, needed - ALLOWED_NEEDED
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True,
                             check=True).stdout.split()[2::3]
    assert symbols and all(name.startswith("edgeclip_") for name in symbols), symbols
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(image)
    label, p = _example_top1(folder, _build_example("aarch64-linux-gnu-gcc", folder), image, prefix)
    expected = _runner_top1(folder, image, prefix)
    assert label == expected[0] and p == pytest.approx(expected[1], abs=1e-4)


def test_embed_batch_8_equals_batch_1_for_11_images_in_order(folder, tmp_path):
    assert "batch 8 modules/ternary/image.b8.so main\n" in (folder / "runner.plan").read_text()
    rng = np.random.default_rng(2)
    for i in range(11):  # 8 + 1 + 1 + 1 on a 1,8 bundle; sizes vary so rows differ
        Image.fromarray(rng.integers(0, 256, (30 + 3 * i, 41, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    singles = lines(run(folder, "embed", "--image", tmp_path))
    batched = lines(run(folder, "embed", "--image", tmp_path, "--batch", 8))
    assert [row["image"] for row in batched] == [row["image"] for row in singles] == [
        str(tmp_path / f"{i:02d}.png") for i in range(11)]
    one, eight = (np.array([row["embedding"] for row in rows]) for rows in (singles, batched))
    assert (one * eight).sum(axis=1).min() >= 0.9999
    assert np.abs(one - eight).max() < 1e-4
    (summary,) = lines(run(folder, "embed", "--image", tmp_path, "--batch", 8, "--out", tmp_path / "all.npy"))
    assert summary["count"] == 11
    np.testing.assert_allclose(np.load(tmp_path / "all.npy"), eight, atol=1e-6)


def test_bench_batch_8_reports_its_load_time_and_reproduces_the_reference_per_row(folder):
    (report,) = lines(run(folder, "bench", "--tower", "image", "--batch", 8, "--runs", 2, "--warmup", 1))
    image = report["towers"]["image"]
    assert report["batch"] == image["batch"] == 8 and image["output_shape"][0] == 8
    assert report["load_ms"] > 0 and image["load_ms"] > 0
    assert image["cosine_to_reference"] >= 0.999


def test_bench_image_times_decode_preprocess_and_tower_and_embeds_as_embed_does(folder, images, tmp_path):
    (report,) = lines(run(folder, "bench", "--variant", "ternary", "--tower", "image", "--image", images[1], "--runs", 3,
                          "--warmup", 1, "--save-outputs", tmp_path))
    image = report["towers"]["image"]
    assert image["image"] == str(images[1]) and image["cosine_to_reference"] is None  # not the reference input
    stages = image["stages_ms"]
    assert list(stages) == ["decode", "preprocess", "tower"] and all(stages[s]["p50"] > 0 for s in stages)
    assert sum(stages[s]["p50"] for s in stages) <= image["latency_ms"]["p90"] * 1.01
    (embedded,) = lines(run(folder, "embed", "--image", images[1]))
    np.testing.assert_allclose(unit(np.load(tmp_path / "ternary-image.npy"))[0], embedded["embedding"], atol=1e-5)


BAD_BATCHES = [
    (("embed", "--image", "IMAGE", "--batch", 0), 2, "--batch needs a whole number of at least 1, not '0'"),
    (("embed", "--image", "IMAGE", "--batch", 65), 2, "--batch needs a whole number from 1 to 64, not '65'"),
    (("embed", "--image", "IMAGE", "--batch", "8x"), 2, "--batch needs a whole number of at least 1, not '8x'"),
    (("bench", "--tower", "image", "--batch", 3), 2, "the image tower is compiled for batch 1,8; pick one"),
    (("bench", "--batch", 8), 2, "the text tower is compiled for batch 1"),
    (("bench", "--image", "IMAGE", "--batch", 8), 2, "--image times one photo a call: it takes batch 1 and no --input"),
    (("bench", "--tower", "text", "--image", "IMAGE"), 2, "--image needs the image tower; this bundle's ternary variant has none"),
]


@pytest.mark.parametrize(("argv", "code", "fragment"), BAD_BATCHES, ids=[" ".join(map(str, c[0][-3:])) for c in BAD_BATCHES])
def test_bad_batch_values_are_refused_in_one_line(folder, images, argv, code, fragment):
    done = run(folder, *(images[0] if a == "IMAGE" else a for a in argv), code=code)
    assert len(done.stderr.splitlines()) == 1 and fragment in done.stderr, done.stderr


def test_the_manifest_lists_the_batch_sizes_and_older_bundles_still_read(bundle, folder, images):
    with local.extracted(bundle) as (_, manifest):
        pass
    image = variant_towers(manifest)["ternary"]["image"]
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert image["batch_modules"] == [{"batch": 8, "path": "modules/ternary/image.b8.so", "function": "main"}]
    assert "batch_modules" not in variant_towers(manifest)["ternary"]["text"]  # texts run one at a time
    older = older_schema(manifest, 2)
    check_manifest(older, "v2.edgeclip")  # a version 2 bundle: batch 1 only
    older["modules"]["ternary"]["image"]["batch_modules"] = image["batch_modules"]
    with pytest.raises(BundleError, match="needs bundle schema version 3"):
        check_manifest(older, "v2.edgeclip")
    for batch in (1, 65, True):
        bad = copy.deepcopy(manifest)
        variant_towers(bad)["ternary"]["image"]["batch_modules"][0]["batch"] = batch
        with pytest.raises(BundleError, match="batch_modules.0.batch` is .*not a batch size from 2 to 64"):
            check_manifest(bad, "b.edgeclip")
    # An older plan (no batch lines) runs --batch 8 one image a call, with the same embeddings.
    plan = folder / "runner.plan"
    singles = lines(run(folder, "embed", "--image", *images))
    plan.write_text("".join(line for line in plan.read_text().splitlines(True) if not line.startswith("batch ")))
    batched = lines(run(folder, "embed", "--image", *images, "--batch", 8))
    np.testing.assert_allclose([r["embedding"] for r in batched], [r["embedding"] for r in singles], atol=1e-6)


@pytest.mark.parametrize("sizes", ["8", "1,65", "1,x", "0,1"])
def test_build_refuses_bad_batch_sizes_in_one_line_before_compiling(sizes, capsys):
    assert main(["build", "--target", "x86-64", "--model", "no-such-model", "--batch", sizes, "-o", "out"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgeclip build: error: --batch") and "--batch 1,8" in err, err
