"""Whole-model lowering for an NVIDIA GPU: the tiny CLIP's towers lower and build for sm_87
(jetson-orin-nano's Orin GPU) and sm_90 (`cuda-host --cuda-arch sm_90`) with real TVM and nvcc
compiles; every ternary linear runs the CUDA family's dp4a kernel and every float op has a GPU
schedule. Running a tower needs a CUDA GPU: that test compares it with torch where one exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm
from model_fixtures import cosine, make_ternary_tiny_clip

from edgeclip.errors import ModelError, TargetError
from edgeclip.lower.build import CompiledModel, build_tower
from edgeclip.lower.importer import import_tower
from edgeclip.lower.target import resolve_target
from edgeclip.models.families import model_towers
from edgeclip.quant import ternary_layers

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not found on PATH")

GPUS = {"sm_87": ("jetson-orin-nano", None), "sm_90": ("cuda-host", "sm_90")}  # arch -> (target, --cuda-arch)
PREFIXES = {"image": ("vision_model.", "visual_projection"), "text": ("text_model.", "text_projection")}


@pytest.fixture(scope="module")
def student():
    return make_ternary_tiny_clip(seed=3)


@pytest.fixture(scope="module")
def imported(student):
    return {name: (import_tower(tower), tower) for name, tower in model_towers(student).items()}


def build_for(imported, target, act="int8"):
    return {name: build_tower(mod, tower, target, act) for name, (mod, tower) in imported.items()}


@pytest.fixture(scope="module", params=sorted(GPUS))
def gpu_build(request, imported):
    name, cuda_arch = GPUS[request.param]
    target = resolve_target(name, device="cuda", cuda_arch=cuda_arch)
    return request.param, target, build_for(imported, target)


def modules(module):
    yield module
    for child in module.imports:
        yield from modules(child)


def cuda_source(tower) -> str:
    return "".join(m.inspect_source("cuda") for m in modules(tower.executable.mod) if m.kind == "cuda")


def test_targets_name_the_gpu_they_lower_for(gpu_build):
    arch, target, _ = gpu_build
    assert target.family == "cuda" and target.device == "cuda"
    assert target.tvm_target["kind"] == "cuda" and target.tvm_target["arch"] == arch
    host = target.tvm_target["host"]
    assert host == {**target.board.tvm_cpu, "num-cores": target.threads}  # the board's CPU drives the GPU
    assert tvm.target.Target(target.tvm_target).host.kind.name == "llvm"


def test_every_ternary_linear_is_a_cuda_dp4a_kernel(student, gpu_build):
    _, _, built = gpu_build
    layers = ternary_layers(student)
    for name, tower in built.items():
        expected = [n for n in layers if n.startswith(PREFIXES[name])]
        report = tower.report
        assert report.total == len(expected), f"{name}: {report.total} kernels for {len(expected)} ternary layers"
        assert tower.unscheduled == []  # every float op has a GPU schedule (an unbound one fails the build)
        source = cuda_source(tower)
        kernels = set(re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', source))
        for key in report.kernels:
            if key[0] == "ternary_linear":
                symbol = "_".join(str(k) for k in key)
                assert f"{symbol}_kernel" in kernels, f"{symbol} has no CUDA kernel"
        assert "__dp4a(" in source
        assert any(k.startswith(("fused_", "softmax", "layer_norm", "matmul")) for k in kernels)  # the float ops too


def test_device_code_compiles_with_nvcc_to_dp4a_for_the_arch(gpu_build, tmp_path):
    """The device code TVM generated (the module holds it as CUDA C: see docs/lowering.md) compiles
    with CUDA 13's nvcc for the board's arch, and the ternary kernels use the dp4a instruction."""
    arch, _, built = gpu_build
    for name, tower in built.items():
        source, ptx = tmp_path / f"{name}.cu", tmp_path / f"{name}.ptx"
        source.write_text(cuda_source(tower))
        done = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", str(source), "-o", str(ptx)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        text = ptx.read_text()
        assert f".target {arch}" in text and "dp4a.s32.s32" in text, name


def test_image_tower_counts_its_patch_embedding(student, gpu_build):
    _, _, built = gpu_build
    assert built["image"].report.convs == 1 and built["text"].report.embeddings >= 1


def test_exported_libraries_exist(gpu_build, tmp_path):
    arch, target, built = gpu_build
    out = CompiledModel(target, "int8", "clip", built).save(tmp_path / arch)
    manifest = json.loads((out / "compiled.json").read_text())
    assert manifest["tvm_target"]["kind"] == "cuda" and manifest["tvm_target"]["arch"] == arch
    for name, info in manifest["towers"].items():
        library = out / info["library"]
        assert library.stat().st_size > 0 and library.read_bytes()[:4] == b"\x7fELF"
        machine = int.from_bytes(library.read_bytes()[18:20], "little")
        assert machine == {"x86_64": 62, "aarch64": 183}[target.board.arch], name  # linked for the board's CPU
        assert all((out / w["path"]).is_file() for w in info["packed_weights"])


def test_bad_gpu_requests_fail_with_one_clear_line():
    with pytest.raises(TargetError, match="name its arch with --cuda-arch"):
        resolve_target("cuda-host", device="cuda")
    with pytest.raises(TargetError, match="not a GPU arch CUDA 13 builds for"):
        resolve_target("cuda-host", device="cuda", cuda_arch="sm_53")
    with pytest.raises(TargetError, match="jetson-orin-nano's GPU is sm_87"):
        resolve_target("jetson-orin-nano", device="cuda", cuda_arch="sm_90")
    with pytest.raises(TargetError, match="rpi5 has no NVIDIA GPU"):
        resolve_target("rpi5", device="cuda")
    with pytest.raises(TargetError, match="only applies with --device cuda"):
        resolve_target("cuda-host", cuda_arch="sm_90")
    with pytest.raises(TargetError, match="--device must be one of cpu, cuda"):
        resolve_target("cuda-host", device="gpu")


@pytest.mark.parametrize("argv,problem", [
    (["--device", "cuda"], "name its arch with --cuda-arch"),
    (["--device", "cuda", "--cuda-arch", "sm_61"], "not a GPU arch CUDA 13 builds for"),
    (["--cuda-arch", "sm_90"], "only applies with --device cuda"),
])
def test_compile_verb_refuses_a_bad_gpu_request_in_one_line(tmp_path, argv, problem):
    done = subprocess.run([sys.executable, "-m", "edgeclip.cli", "compile", "--model", "demo", "--target", "cuda-host",
                           *argv, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and problem in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(tvm.cuda(0).exist, reason="this machine has a CUDA GPU")
def test_running_a_gpu_tower_without_a_gpu_names_the_problem(gpu_build, student):
    _, _, built = gpu_build
    size = student.config.vision_config.image_size
    with pytest.raises(ModelError, match="compiled for an NVIDIA GPU and this machine has none"):
        built["image"](np.zeros((1, 3, size, size), np.float32))


@pytest.mark.skipif(not tvm.cuda(0).exist, reason="no CUDA GPU on this machine")
def test_gpu_towers_match_torch(student, imported, monkeypatch):
    """Built for this GPU's own arch (cuda-host), both towers agree with torch (cosine >= 0.995).
    With the driver present TVM compiles the device code while building, through its callback:
    nvcc here (its default, NVRTC, needs the `cuda-bindings` package)."""
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "nvcc")
    arch = "sm_" + tvm.cuda(0).compute_version.replace(".", "")
    built = build_for(imported, resolve_target("cuda-host", device="cuda", cuda_arch=arch))
    rng = np.random.default_rng(0)
    size = student.config.vision_config.image_size
    pixels = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    ids = rng.integers(1, 49000, (1, 77)).astype(np.int64)
    mask = np.ones_like(ids)
    with torch.no_grad():
        image = student.get_image_features(pixel_values=torch.from_numpy(pixels))
        text = student.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    expected = {"image": getattr(image, "pooler_output", image).numpy(), "text": getattr(text, "pooler_output", text).numpy()}
    got = {"image": built["image"](pixels), "text": built["text"](ids, mask)}
    for name in got:
        assert cosine(got[name], expected[name]) >= 0.995, name
