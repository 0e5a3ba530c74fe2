"""Device bundles: built from real compiled TVM modules for rpi4 (aarch64, run under qemu-user)
and for this host, with the real cross-compiled native runner and the wheels' runtime libraries.

Most towers here are a small two-tower model (patch conv image tower, embedding-bag text tower)
written in PyTorch and compiled with TVM's stock Relax pipeline, so the format, runner and refusal
tests stay fast; `test_tiny_clip_*` build whole ternary CLIPs through edgeclip.lower (the host and
rpi4 kernel families) and check every tower against the PyTorch reference.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
import torch
from torch import nn

from edgeclip.bundle import local
from edgeclip.bundle.build import BundleModule, TowerReference, npy_bytes, write_model_bundle
from edgeclip.errors import BundleError, ToolchainError
from edgeclip.formats.bundle import (
    MANIFEST,
    elf_arch,
    read_manifest,
    variant_towers,
    verify_bundle,
    write_bundle,
)
from edgeclip.hostinfo import physical_cores
from edgeclip.lower.thread_pool import THREAD_ENV
from edgeclip.targets import load_target

IMAGE, CONTEXT, DIM = 16, 8, 12
HOST = "x86-64-v3"
needs_qemu = pytest.mark.skipif(shutil.which("qemu-aarch64") is None or shutil.which("aarch64-linux-gnu-g++") is None,
                                reason="emulating rpi4 needs qemu-aarch64 and aarch64-linux-gnu-g++ "
                                       "(apt: qemu-user g++-aarch64-linux-gnu)")
needs_x86_host = pytest.mark.skipif(platform.machine() != "x86_64", reason="the host bundle is built for x86-64")


class ImageTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, kernel_size=4, stride=4)
        self.proj = nn.Linear(8, DIM)

    def forward(self, pixels):
        return self.proj(torch.relu(self.patch(pixels)).mean(dim=(2, 3)))


class TextTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(49408, 8)  # the CLIP BPE vocabulary, so real token ids fit
        self.proj = nn.Linear(8, DIM)

    def forward(self, ids):
        return self.proj(self.embed(ids).mean(dim=1))


def _towers():
    torch.manual_seed(0)
    return {"image": ImageTower().eval(), "text": TextTower().eval()}


def _reference_inputs():
    rng = np.random.default_rng(1)
    return {"image": rng.standard_normal((1, 3, IMAGE, IMAGE)).astype(np.float32),
            "text": rng.integers(0, 49408, (1, CONTEXT)).astype(np.int64)}


def _compile(model, example, target):
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    program = torch.export.export(model, (torch.from_numpy(example),))
    return tvm.compile(from_exported_program(program, keep_params_as_input=False), target=tvm.target.Target(target.tvm_cpu))


def _build(out_dir, target_name, variants=("ternary",)):
    target = load_target(target_name)
    towers, inputs = _towers(), _reference_inputs()
    executables = {tower: _compile(model, inputs[tower], target) for tower, model in towers.items()}
    modules = [BundleModule(tower, variant, executables[tower]) for variant in variants for tower in towers]
    with torch.no_grad():
        refs = [TowerReference(t, (inputs[t],), (towers[t](torch.from_numpy(inputs[t])).numpy(),)) for t in towers]
    info = {"model": {"family": "hf-clip"}, "tokenizer": {"kind": "clip-bpe", "context_length": CONTEXT, "dtype": "int64"},
            "preprocessing": {"image_size": IMAGE}}
    return write_model_bundle(out_dir, "toy", target, modules, refs, info)


@pytest.fixture(scope="module")
def rpi4_bundle(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("rpi4"), "rpi4", variants=("ternary", "fp32"))


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("host"), HOST)


def _members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


# ---- building ---------------------------------------------------------------------------------


@needs_qemu
def test_rpi4_bundle_is_self_contained_aarch64(rpi4_bundle):
    assert rpi4_bundle.name == "toy-rpi4.edgeclip"
    members = _members(rpi4_bundle)
    manifest = json.loads(members[MANIFEST])
    assert manifest["runner"] == "bin/edgeclip-runner" and manifest["target"]["arch"] == "aarch64"
    assert list(variant_towers(manifest)) == ["ternary", "fp32"] and manifest["min_cosine"]["ternary"] == 0.995
    binaries = {name for name, data in members.items() if data[:4] == b"\x7fELF"}
    assert {"bin/edgeclip-runner", "lib/libedgeclip.so", "lib/libtvm_runtime.so", "lib/libtvm_ffi.so",
            "modules/ternary/image.so", "modules/fp32/text.so"} <= binaries
    assert members["include/edgeclip.h"].startswith(b"/* edgeclip.h")
    assert {elf_arch(members[name]) for name in binaries} == {"aarch64"}
    assert manifest["members"]["bin/edgeclip-runner"]["executable"] is True


@needs_qemu
def test_same_inputs_give_identical_member_hashes(rpi4_bundle, tmp_path):
    again = _build(tmp_path, "rpi4", variants=("ternary", "fp32"))
    first, second = read_manifest(rpi4_bundle)["members"], read_manifest(again)["members"]
    assert {n: m["sha256"] for n, m in first.items()} == {n: m["sha256"] for n, m in second.items()}
    assert hashlib.sha256(rpi4_bundle.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()


def test_missing_cross_compiler_names_the_debian_package(tmp_path, monkeypatch):
    board = load_target("rpi4").source.read_text()
    board = board.replace('name = "rpi4"', 'name = "odd-board"').replace(
        'compiler = "aarch64-linux-gnu-g++"', 'compiler = "edgeclip-no-such-g++"').replace(
        'debian_package = "g++-aarch64-linux-gnu"', 'debian_package = "g++-odd-linux-gnu"')
    (tmp_path / "odd-board.toml").write_text(board)
    monkeypatch.setenv("EDGECLIP_TARGETS_DIR", str(tmp_path))
    ref = TowerReference("image", (np.zeros(1, np.float32),), (np.zeros(1, np.float32),))
    with pytest.raises(ToolchainError, match=r"edgeclip-no-such-g\+\+.*apt-get install g\+\+-odd-linux-gnu"):
        write_model_bundle(tmp_path, "toy", load_target("odd-board"), [BundleModule("image", "ternary", None)], [ref])


# ---- running ----------------------------------------------------------------------------------


@needs_qemu
def test_rpi4_runner_under_qemu_reproduces_reference(rpi4_bundle):
    report = local.profile(rpi4_bundle, runs=3, warmup=1, emulate=True)
    assert report["module"] == "ternary" and report["cosine_to_reference"] >= 0.999
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99"} and report["peak_rss_kb"] > 0 and report["load_ms"] > 0
    assert set(report["towers"]) == {"image", "text"}
    baseline = report["baseline"]
    assert baseline["module"] == "fp32" and baseline["cosine_to_reference"] >= 0.999
    only_fp32 = local.profile(rpi4_bundle, runs=1, warmup=0, module="fp32", emulate=True)
    assert only_fp32["module"] == "fp32" and "baseline" not in only_fp32


@needs_qemu
def test_aarch64_bundle_needs_emulate_here(rpi4_bundle):
    if platform.machine() == "aarch64":
        pytest.skip("on an aarch64 host the rpi4 bundle runs natively")
    with pytest.raises(BundleError, match="--emulate"):
        local.profile(rpi4_bundle, runs=1)


@needs_x86_host
def test_host_bundle_runs_natively_and_takes_npy_inputs(host_bundle):
    report = local.profile(host_bundle, runs=5, warmup=1)
    assert report["cosine_to_reference"] >= 0.999 and report["latency_ms"]["p99"] >= report["latency_ms"]["p50"]
    ids = np.arange(CONTEXT, dtype=np.int64)[None] * 7
    out = local.tower_outputs(host_bundle, {"text": [(ids,)]})["text"][0]
    with torch.no_grad():
        expected = _towers()["text"](torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@needs_x86_host
def test_host_runner_sizes_its_pool_to_the_physical_cores(host_bundle):
    """Without --threads or a thread variable the runner takes every physical core (TVM alone
    takes half the CPUs on x86); --threads and the user's TVM_NUM_THREADS win over that."""
    clean = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    with local.extracted(host_bundle) as (folder, manifest):
        command = local.runner_command(folder, manifest, emulate=False) + ["bench", "--variant", "ternary", "--runs", "1"]

        def threads(*args, **env):
            done = subprocess.run([*command, *args], env=clean | env, capture_output=True, text=True, check=True)
            return json.loads(done.stdout)["threads"]

        assert threads() == physical_cores()
        assert threads("--threads", "1") == 1
        assert threads(TVM_NUM_THREADS="3") == 3


@needs_x86_host
def test_a_non_finite_output_fails_the_runners_output_check(host_bundle):
    """NaN never agrees with anything: a NaN reference (or output) is cosine -1, not the 1 a
    NaN-swallowing minimum used to report."""
    with local.extracted(host_bundle) as (folder, manifest):
        command = local.runner_command(folder, manifest, emulate=False) + ["bench", "--variant", "ternary", "--runs", "1"]
        healthy = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        expected = folder / manifest["reference"]["text"]["outputs"][0]["path"]
        np.save(expected, np.full_like(np.load(expected), np.nan))
        broken = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert healthy["cosine_to_reference"] >= 0.999
    assert broken["towers"]["text"]["cosine_to_reference"] == -1 and broken["cosine_to_reference"] == -1
    assert broken["towers"]["image"]["cosine_to_reference"] >= 0.999


@needs_x86_host
def test_the_host_bundle_classifies_an_image_and_verifies(host_bundle, tmp_path, capsys):
    from PIL import Image

    from edgeclip.cli.bundles import add_bundle_commands

    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    ranked = local.classify(host_bundle, image, ["a cat", "a dog", "a car"])
    assert sorted(label for label, _ in ranked) == ["a car", "a cat", "a dog"]
    assert abs(sum(p for _, p in ranked) - 1) < 1e-6 and ranked[0][1] >= ranked[-1][1]

    parser = __import__("argparse").ArgumentParser()
    add_bundle_commands(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["verify", str(host_bundle), "--arch", "x86_64"])
    args.func(args)
    assert "OK" in capsys.readouterr().out


# ---- tampering --------------------------------------------------------------------------------


def _retar(path, out, edit):
    """Copy a bundle's members into a new tar, letting `edit(name, info, data)` change or add them."""
    with tarfile.open(path) as src, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            for info, payload in edit(member, data):
                dst.addfile(info, None if payload is None else io.BytesIO(payload))
    return out


def _keep(member, data):
    return [(member, data)]


@needs_qemu
def test_intact_bundle_verifies_and_extracts(rpi4_bundle, tmp_path):
    manifest = verify_bundle(rpi4_bundle, arch="aarch64", extract_to=tmp_path / "x")
    assert (tmp_path / "x" / manifest["runner"]).stat().st_mode & 0o111


@needs_qemu
def test_changed_byte_is_refused(rpi4_bundle, tmp_path):
    def flip(member, data):
        if member.name == "modules/ternary/image.so":
            data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
        return [(member, data)]

    with pytest.raises(BundleError, match=r"modules/ternary/image.so.*sha256"):
        verify_bundle(_retar(rpi4_bundle, tmp_path / "b.edgeclip", flip))


@needs_qemu
def test_truncated_tar_is_refused(rpi4_bundle, tmp_path):
    cut = tmp_path / "cut.edgeclip"
    cut.write_bytes(rpi4_bundle.read_bytes()[: rpi4_bundle.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated|damaged"):
        verify_bundle(cut)


@needs_qemu
@pytest.mark.parametrize("name,kind", [("../escape.txt", "file"), ("/etc/evil", "file"),
                                       ("lib/evil.so", "symlink")])
def test_member_escaping_the_folder_is_refused(rpi4_bundle, tmp_path, name, kind):
    def add_evil(member, data):
        out = [(member, data)]
        if member.name == MANIFEST:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                out.append((info, None))
            else:
                info.size = 4
                out.append((info, b"evil"))
        return out

    bad = _retar(rpi4_bundle, tmp_path / "bad.edgeclip", add_evil)
    with pytest.raises(BundleError, match="escapes the bundle folder|is a symlink"):
        verify_bundle(bad, extract_to=tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape.txt").exists()


@needs_qemu
def test_wrong_schema_version_is_refused(rpi4_bundle, tmp_path):
    def bump(member, data):
        if member.name == MANIFEST:
            manifest = json.loads(data)
            manifest["schema_version"] = 99
            data = json.dumps(manifest).encode()
            member.size = len(data)
        return [(member, data)]

    with pytest.raises(BundleError, match="schema version 99 is not supported"):
        verify_bundle(_retar(rpi4_bundle, tmp_path / "v99.edgeclip", bump))


@needs_qemu
@needs_x86_host
def test_bundle_for_another_architecture_is_refused(rpi4_bundle, host_bundle, tmp_path):
    with pytest.raises(BundleError, match="built for 'aarch64' but this device is 'x86_64'"):
        verify_bundle(rpi4_bundle, arch="x86_64")
    # A manifest that claims aarch64 while carrying an x86-64 runner (hashes consistent) is refused too.
    members = _members(rpi4_bundle)
    manifest = json.loads(members.pop(MANIFEST))
    members["bin/edgeclip-runner"] = _members(host_bundle)["bin/edgeclip-runner"]
    mixed = write_bundle(tmp_path / "mixed.edgeclip", {k: v for k, v in manifest.items() if k != "members"},
                         members, frozenset({"bin/edgeclip-runner"}))
    with pytest.raises(BundleError, match="bin/edgeclip-runner.*x86_64 code but the bundle says 'aarch64'"):
        verify_bundle(mixed)


# ---- the whole model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip_checkpoint(tmp_path_factory):
    from model_fixtures import make_tiny_clip_dir

    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp("tiny-clip")
    teacher = make_tiny_clip_dir(root / "teacher")
    return ternarize_source(str(teacher), TernaryConfig(policy="q-all"), root / "tiny-q")[1]


def _check_tiny_clip_bundle(bundle, arch: str, emulate: bool) -> None:
    binaries = [data for data in _members(bundle).values() if data[:4] == b"\x7fELF"]
    # runner, 3 libs, 2 towers x 2 variants, and each variant's image tower for batch 8 (the default 1,8)
    assert len(binaries) == 4 + 4 + 2 and {elf_arch(data) for data in binaries} == {arch}
    manifest = read_manifest(bundle)
    for entry in variant_towers(manifest)["ternary"].values():  # weights ship 5 trits a byte
        assert entry["packed_weights"]
        for weight in entry["packed_weights"]:
            base3_bytes = -(-4 * math.prod(weight["shape"]) // 5)
            assert manifest["members"][weight["path"]]["bytes"] == len(npy_bytes(np.zeros(base3_bytes, np.uint8)))
    report = local.profile(bundle, runs=2, warmup=1, emulate=emulate)
    assert set(report["towers"]) == {"image", "text"}
    assert report["cosine_to_reference"] >= 0.995  # int8 activations
    assert report["baseline"]["cosine_to_reference"] >= 0.999  # fp32


@pytest.mark.slow
@needs_x86_host
def test_tiny_clip_host_bundle_reproduces_reference_and_classifies(tiny_clip_checkpoint, tmp_path):
    from PIL import Image

    from edgeclip.bundle.build import build_bundle

    bundle = build_bundle(tiny_clip_checkpoint, HOST, tmp_path, baseline="fp32")
    assert bundle.name == f"tiny-q-{HOST}.edgeclip"
    _check_tiny_clip_bundle(bundle, "x86_64", emulate=False)
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(image)
    ranked = local.classify(bundle, image, ["a cat", "a dog"])
    assert {label for label, _ in ranked} == {"a cat", "a dog"} and abs(sum(p for _, p in ranked) - 1) < 1e-6
    assert local.embed_text(bundle, "a cat").shape == (1, 32)
    with local.extracted(bundle) as (folder, manifest):  # a damaged weight file, past the hash check
        damaged = folder / variant_towers(manifest)["ternary"]["text"]["packed_weights"][0]["path"]
        stored = np.load(damaged)
        stored[len(stored) // 2] = 255
        np.save(damaged, stored)
        with pytest.raises(BundleError, match="no 5 trits encode"):
            local.run_runner(folder, manifest, ["bench", "--variant", "ternary", "--tower", "text", "--runs", "1"])


@pytest.mark.slow
@needs_qemu
def test_tiny_clip_rpi4_bundle_reproduces_reference_under_qemu(tiny_clip_rpi4_bundle):
    """`tiny_clip_rpi4_bundle` (conftest) is `build_bundle(q-all tiny CLIP, "rpi4", baseline="fp32")`."""
    assert tiny_clip_rpi4_bundle.name == "tiny-clip-rpi4.edgeclip"
    _check_tiny_clip_bundle(tiny_clip_rpi4_bundle, "aarch64", emulate=True)


# ---- the built-in demo family (grayscale ViT + MiniLM text tower) --------------------------------


needs_fashion_mnist = pytest.mark.skipif(
    not __import__("edgeclip.training.data", fromlist=["x"]).fashion_mnist_dir().joinpath(
        "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def demo_clip_checkpoint(tmp_path_factory):
    """A random-weight DemoClip (random ViT and projections, the real MiniLM text tower), q-all."""
    from edgeclip.models.demo import new_demo_clip
    from edgeclip.models.families import family_of
    from edgeclip.models.model_io import save_model
    from edgeclip.quant import TernaryConfig, quantize

    model = new_demo_clip(seed=0)
    config = TernaryConfig(policy="q-all")
    quantize(model, config)
    return save_model(model, tmp_path_factory.mktemp("demo-clip") / "demo-q", family_of(model), model.config_dict(), config)


@pytest.fixture(scope="module")
def demo_clip_host_bundle(demo_clip_checkpoint, tmp_path_factory):
    from edgeclip.bundle.build import build_bundle

    return build_bundle(demo_clip_checkpoint, HOST, tmp_path_factory.mktemp("demo-clip-bundle"))


def _demo_dual(checkpoint):
    from edgeclip.models.dual import DualEncoder
    from edgeclip.models.model_io import load_model

    return DualEncoder(load_model(checkpoint)[0]).eval()


def test_demo_family_inputs_match_the_models_own_preprocessing_and_tokenizer(tmp_path):
    """What a demo-clip bundle feeds its towers is bit-identical to what the model trained on."""
    from PIL import Image

    from edgeclip.bundle.model_info import bundle_family, model_info
    from edgeclip.models.demo import new_demo_clip
    from edgeclip.models.dual import DualEncoder

    dual = DualEncoder(new_demo_clip())
    demo = bundle_family("demo-clip")
    info = model_info(demo, {"family": "demo-clip", "arch": dual.model.config_dict()}, 32)
    assert info["preprocessing"]["channels"] == 1 and info["tokenizer"]["kind"] == "wordpiece"
    rng = np.random.default_rng(7)
    for array in (rng.integers(0, 256, (28, 28), dtype=np.uint8), rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)):
        path = tmp_path / "image.png"
        Image.fromarray(array).save(path)
        ours = demo.image.pixels(Image.open(path), info["preprocessing"])
        np.testing.assert_array_equal(ours, dual.preprocess([np.asarray(Image.open(path).convert("RGB"))]).numpy())
    tokenize = demo.text.tokenizer(demo.text.installed_vocab(), info["tokenizer"])
    for text in ("a photo of a pullover sweater.", "Ünïcode café, ANKLE boot!!"):
        ids, mask = tokenize(text)
        theirs = dual.tokenize([text])
        length = int(theirs["attention_mask"].sum())
        assert ids.shape == mask.shape == (1, 32) and int(mask.sum()) == length
        np.testing.assert_array_equal(ids[:, :length], theirs["input_ids"].numpy())
        assert not ids[:, length:].any()


@pytest.mark.slow
@needs_x86_host
def test_demo_clip_host_bundle_carries_its_family_and_reproduces_reference(demo_clip_host_bundle):
    from edgeclip.models.families import family

    manifest = read_manifest(demo_clip_host_bundle)
    assert manifest["model"]["family"] == "demo-clip"
    assert manifest["tokenizer"]["kind"] == "wordpiece" and manifest["tokenizer"]["context_length"] == 32
    assert manifest["preprocessing"]["image_size"] == 28 and manifest["preprocessing"]["channels"] == 1
    vocab = _members(demo_clip_host_bundle)[manifest["tokenizer"]["vocab"]]
    assert vocab == family("demo-clip").text.installed_vocab().read_bytes()
    assert manifest["reference"]["image"]["inputs"][0]["shape"] == [1, 1, 28, 28]
    report = local.profile(demo_clip_host_bundle, runs=2, warmup=1)
    assert set(report["towers"]) == {"image", "text"} and report["cosine_to_reference"] >= 0.995


@pytest.mark.slow
@needs_x86_host
@needs_fashion_mnist
def test_classify_on_fashion_mnist_gives_pytorchs_top1(demo_clip_host_bundle, demo_clip_checkpoint, tmp_path):
    """The bundle with host preprocessing (`local.classify`) on real Fashion-MNIST test images: the
    top-1 of the PyTorch model, and image / text embeddings that agree with PyTorch's (so
    preprocessing and tokenizer are the model's)."""
    from PIL import Image

    from edgeclip.models.families import family
    from edgeclip.training.data import FASHION_CLASSES, load_fashion_mnist

    data = load_fashion_mnist("test")
    labels = [f"a photo of a {name}." for name in FASHION_CLASSES]
    dual = _demo_dual(demo_clip_checkpoint)
    manifest = read_manifest(demo_clip_host_bundle)
    for index in (0, 1, 2):
        path = tmp_path / f"fashion-{index}.png"
        Image.fromarray(data.images[index]).save(path)
        ranked = local.classify(demo_clip_host_bundle, path, labels)
        with torch.no_grad():
            image = dual.encode_image(dual.preprocess([data.images[index]]))
            tokens = dual.tokenize(labels)
            text = dual.encode_text(tokens["input_ids"], tokens["attention_mask"])
        assert ranked[0][0] == labels[int((image @ text.t()).argmax())]
        pixels = family("demo-clip").image.pixels(Image.open(path), manifest["preprocessing"])
        ours = local.tower_outputs(demo_clip_host_bundle, {"image": [(pixels,)]})["image"][0]
        assert float(_cosine(ours, image.numpy())) >= 0.99
    ours = local.embed_text(demo_clip_host_bundle, labels[0])
    assert float(_cosine(ours, text[0:1].numpy())) >= 0.99


@pytest.mark.slow
@needs_x86_host
@needs_fashion_mnist
def test_device_preprocessing_of_the_grayscale_family_matches_the_models_own(demo_clip_host_bundle, tmp_path):
    """The runner's `preprocess` on a demo-clip bundle (luminance, whole frame squashed to a square,
    bilinear): Fashion-MNIST frames and resized colour photos (PNG and JPEG) give the model's own
    pixels exactly, and the normalised tensor follows."""
    from PIL import Image

    from edgeclip.models.families import family
    from edgeclip.models.preprocess import grayscale_square
    from edgeclip.training.data import load_fashion_mnist

    skimage_data = pytest.importorskip("skimage.data")
    images = {f"fashion-{i}.png": load_fashion_mnist("test").images[i] for i in (0, 1, 2)}
    images.update({"astronaut.png": skimage_data.astronaut(), "coffee.jpg": skimage_data.coffee(),
                   "camera.png": skimage_data.camera(), "wide.png": np.asarray(skimage_data.rocket())[:100]})
    with local.extracted(demo_clip_host_bundle) as (folder, manifest):
        runner = local.runner_command(folder, manifest, emulate=False)
        for name, array in images.items():
            path = tmp_path / name
            Image.fromarray(np.asarray(array)).save(path, quality=90)
            out, raw = tmp_path / "out.npy", tmp_path / "raw.npy"
            done = subprocess.run([*runner, "preprocess", "--bundle", str(folder), "--image", str(path),
                                   "--out", str(out), "--uint8-out", str(raw)], capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            host = grayscale_square(Image.open(path), 28)
            np.testing.assert_array_equal(np.load(raw).reshape(host.shape), host, err_msg=name)
            expected = family("demo-clip").image.pixels(Image.open(path), manifest["preprocessing"])
            std = manifest["preprocessing"]["std"][0]
            np.testing.assert_allclose(np.load(out), expected, atol=1.001 / 255 / std, err_msg=name)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
