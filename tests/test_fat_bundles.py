"""Fat bundles: `--target rpi` and `--target x86-64` carry one ternary module per kernel family
sharing one weight payload. Checked on real builds of the tiny CLIP: the variants table and the
plan, the weights stored once, the instructions each module holds (disassembled), and every
ternary variant run by the real runner (natively, or under qemu-aarch64 as the CPU it is for)
against the reference."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.errors import ToolchainError
from edgeclip.formats.bundle import variant_rows
from edgeclip.formats.manifest import variant_towers
from edgeclip.native import toolchain

pytestmark = pytest.mark.slow

# AVX-512 in AT&T disassembly: zmm registers, the EVEX-only xmm/ymm16-31, mask registers, embedded
# broadcasts, and instructions that exist only as EVEX.
EVEX = re.compile(r"%zmm|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|%k[0-7]\b|\{1to|\b(vpternlog|kmov|vpdpbusd|vpermt2)")
DOT = re.compile(r"\s(sdot|udot)\s")


def _objdump(tool: str, module: Path) -> str:
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool} to disassemble the modules (binutils)")
    return subprocess.run([tool, "-d", str(module)], capture_output=True, text=True, check=True).stdout


def _build(checkpoint, target: str, out: Path) -> tuple[Path, Path, dict]:
    """(the bundle, its extracted folder, the manifest): the image tower, batch 1, with the fp32 baseline."""
    bundle = build_bundle(checkpoint, target, out, towers=("image",), baseline="fp32", batches=(1,))
    folder = out / "extracted"
    with local.extracted(bundle) as (extracted, manifest):
        shutil.copytree(extracted, folder)
    return bundle, folder, manifest


@pytest.fixture(scope="module")
def rpi(tiny_clip_ternary, tmp_path_factory):
    try:
        toolchain.require_compiler("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    except ToolchainError as err:
        pytest.skip(f"needs the aarch64 cross compiler: {err}")
    return _build(tiny_clip_ternary, "rpi", tmp_path_factory.mktemp("fat-rpi"))


@pytest.fixture(scope="module")
def x86(tiny_clip_ternary, tmp_path_factory):
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the x86-64 bundle is built and run on x86-64 hosts")
    return _build(tiny_clip_ternary, "x86-64", tmp_path_factory.mktemp("fat-x86"))


def _bench(command: list[str], folder: Path, variant: str | None = None, env: dict | None = None):
    """The runner's `bench` of `folder` (`variant` forced, or its own choice): the completed process."""
    import os

    chosen = ["--variant", variant] if variant else []
    return subprocess.run([*command, "bench", "--bundle", str(folder), *chosen, "--runs", "1", "--threads", "1",
                           "--warmup", "0"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _measured(done) -> dict:
    import json

    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_fat_rpi_has_two_ternary_variants_sharing_one_weight_payload(rpi):
    bundle, folder, manifest = rpi
    rows = variant_rows(manifest)
    assert [(r["name"], r["precision"], r["kernel_family"], r["device"]) for r in rows] == [
        ("ternary-arm_dotprod", "ternary", "arm_dotprod", "cpu"), ("ternary-arm_neon", "ternary", "arm_neon", "cpu"),
        ("fp32", "fp32", "arm_neon", "cpu")]
    assert rows[0]["cpu_features"] == ["asimd", "asimddp", "asimdhp"] and rows[1]["cpu_features"] == ["asimd"]
    assert manifest["target"]["cpu_features"] == ["asimd"]  # the least demanding variant: what a Pi 4 has
    dot, neon = (variant_towers(manifest)[r["name"]]["image"] for r in rows[:2])
    assert dot["path"] != neon["path"] and dot["packed_weights"] == neon["packed_weights"] != []
    stored = [name for name in manifest["members"] if ".packed" in name]
    assert len(stored) == len(dot["packed_weights"])  # the trits are in the bundle once
    # The second module costs its code (and float constants) only.
    assert rows[1]["added_bytes"] == manifest["members"][neon["path"]]["bytes"]
    plan = (folder / "runner.plan").read_text().splitlines()
    assert [line for line in plan if line.startswith("variant ")] == [
        "variant ternary-arm_dotprod asimd,asimddp,asimdhp", "variant ternary-arm_neon asimd", "variant fp32 asimd"]


def test_neon_modules_hold_no_dot_product_and_the_dotprod_one_does(rpi):
    _, folder, manifest = rpi
    towers = variant_towers(manifest)
    for variant, expect_dot in (("ternary-arm_dotprod", True), ("ternary-arm_neon", False), ("fp32", False)):
        found = len(DOT.findall(_objdump("aarch64-linux-gnu-objdump", folder / towers[variant]["image"]["path"])))
        assert (found > 0) == expect_dot, (variant, found)


def test_fat_x86_64_stores_the_trits_once_in_the_avx512_tiling(x86):
    _, folder, manifest = x86
    rows = variant_rows(manifest)
    vnni, avx2 = (variant_towers(manifest)[r["name"]]["image"] for r in rows[:2])
    assert vnni["packed_weights"] != [] and "stored_shape" not in str(vnni["packed_weights"])
    assert [w["path"] for w in avx2["packed_weights"]] == [w["path"] for w in vnni["packed_weights"]]
    assert [w["stored_shape"] for w in avx2["packed_weights"]] == [w["shape"] for w in vnni["packed_weights"]]
    assert len([name for name in manifest["members"] if ".packed" in name]) == len(vnni["packed_weights"])
    plan = (folder / "runner.plan").read_text()
    assert sum(" from " in line for line in plan.splitlines() if line.startswith("packed ")) == len(avx2["packed_weights"])
    # The AVX2 module adds its code and the few params its 8-lane tiling pads differently.
    own = sum(manifest["members"][p]["bytes"] for p in set(avx2["params"]) - set(vnni["params"]))
    assert rows[1]["added_bytes"] == manifest["members"][avx2["path"]]["bytes"] + own


def test_x86_64_v3_modules_hold_no_avx512_and_the_vnni_one_does(x86):
    _, folder, manifest = x86
    rows = variant_rows(manifest)
    assert [(r["name"], r["kernel_family"]) for r in rows] == [
        ("ternary-x86_avx512", "x86_avx512"), ("ternary-x86_avx2", "x86_avx2"), ("fp32", "x86_avx2")]
    assert "avx512_vnni" in rows[0]["cpu_features"] and not any("avx512" in f for f in rows[1]["cpu_features"])
    towers = variant_towers(manifest)
    for variant, expect_evex in (("ternary-x86_avx512", True), ("ternary-x86_avx2", False), ("fp32", False)):
        text = _objdump("objdump", folder / towers[variant]["image"]["path"])
        assert bool(EVEX.search(text)) == expect_evex, (variant, EVEX.search(text))


def test_fat_x86_64_runs_here_with_each_ternary_variant_forced(x86):
    _, folder, manifest = x86
    flags = Path("/proc/cpuinfo").read_text()
    for row in variant_rows(manifest):
        if row["precision"] != "ternary":
            continue
        if "avx512_vnni" in row["cpu_features"] and " avx512_vnni" not in flags:
            continue  # this host cannot run the VNNI variant; the AVX2 one still runs
        result = _measured(_bench(local.runner_command(folder, manifest, emulate=False), folder, row["name"]))
        assert result["variant"] == row["name"] and result["cosine_to_reference"] >= 0.995, (row["name"], result)


@pytest.mark.parametrize(("variant", "cpu"), [("ternary-arm_neon", "cortex-a72"), ("ternary-arm_dotprod", "cortex-a76")])
def test_fat_rpi_picks_the_variant_its_cpu_runs_under_qemu(rpi, variant, cpu):
    """Unforced, the runner picks the NEON variant on an emulated Cortex-A72 (no dot product: one
    sdot would be SIGILL) and the dot-product one on a Cortex-A76, each matching the reference."""
    _, folder, manifest = rpi
    try:
        command = local.runner_command(folder, manifest, emulate=True)
    except ToolchainError as err:
        pytest.skip(f"needs qemu-user and the arm64 C library: {err}")
    result = _measured(_bench(command, folder, env={"QEMU_CPU": cpu}))
    assert result["variant"] == variant and result["cosine_to_reference"] >= 0.995, result


def test_the_dot_product_variant_forced_on_a_cortex_a72_is_refused_in_one_line(rpi):
    _, folder, manifest = rpi
    try:
        command = local.runner_command(folder, manifest, emulate=True)
    except ToolchainError as err:
        pytest.skip(f"needs qemu-user and the arm64 C library: {err}")
    done = _bench(command, folder, "ternary-arm_dotprod", env={"QEMU_CPU": "cortex-a72"})
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, (done.returncode, done.stderr[-500:])
    assert "lacks asimddp" in done.stderr and "--target rpi" in done.stderr, done.stderr
