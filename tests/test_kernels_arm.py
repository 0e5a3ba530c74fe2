"""ARM kernel families: cross-compiled for aarch64, run under qemu-user, checked against numpy;
their generated assembly checked for the intended instructions.

Emulated timings mean nothing here; only results and instruction mix are checked.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

import numpy as np
import pytest
import tvm

from edgeclip.schedules import arm_dotprod, arm_neon, crossrun
from edgeclip.schedules.reference import expand_scale, ternary_linear_ref
from edgeclip.schedules.ternary import LinearShape
from edgeclip.targets import load_target

FAMILIES = {"neon": arm_neon, "dotprod": arm_dotprod}
BOARDS = {arm_neon: "rpi4", arm_dotprod: "rpi5"}  # a board of each family: its TVM target
FLOAT_MULTIPLIES = {"fmul", "fmla", "fmls", "fnmul", "fmadd", "fmsub", "fnmadd", "fnmsub"}

needs_cross = pytest.mark.skipif(
    bool(crossrun.missing_tools()),
    reason=f"cannot cross-run aarch64 code: missing {', '.join(crossrun.missing_tools())} "
    "(apt: qemu-user g++-aarch64-linux-gnu)",
)


def _build(family, M, K, N, scale_kind, act):
    func = family.linear_primfunc(LinearShape(M, K, N, scale_kind, act), 1)
    return tvm.compile(tvm.IRModule({"ternary_linear": func}), target=load_target(BOARDS[family]).tvm_cpu)


def _scale(rng, kind, N):
    """(kernel scale argument, per-channel scale for the reference); group = 3 slices like QKV."""
    if kind == "tensor":
        s = rng.uniform(0.5, 2.0, 1).astype(np.float32)
        return s, expand_scale(s, N)
    if kind == "channel":
        s = rng.uniform(0.5, 2.0, N).astype(np.float32)
        return s, s
    per_slice = expand_scale(rng.uniform(0.5, 2.0, 3), N, groups=[N // 3] * 3)
    return per_slice, per_slice


# Every family x act x scale kind, on shapes with ragged K (not a multiple of 16), ragged N
# (not a multiple of the 16-channel tile), M = 1 (GEMV) and M = 5.
CASES = [
    ("neon", "int8", "tensor", 5, 40, 24),
    ("neon", "int8", "group", 1, 64, 48),
    ("neon", "fp32", "channel", 5, 64, 48),
    ("neon", "fp32", "group", 1, 40, 24),
    ("dotprod", "int8", "channel", 5, 40, 24),
    ("dotprod", "int8", "group", 1, 64, 48),
    ("dotprod", "fp32", "tensor", 1, 40, 48),
    ("dotprod", "fp32", "group", 5, 64, 24),
]


@needs_cross
@pytest.mark.slow
@pytest.mark.parametrize("family,act,scale_kind,M,K,N", CASES)
def test_matches_numpy_under_qemu(tmp_path, family, act, scale_kind, M, K, N):
    fam = FAMILIES[family]
    rng = np.random.default_rng(zlib.crc32(f"{family}-{act}-{scale_kind}".encode()))
    x = rng.standard_normal((M, K)).astype(np.float32)
    if M > 1:
        x[1] = 0.0  # an all-zero token must quantize to zeros, not divide by zero
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    bias = rng.standard_normal(N).astype(np.float32)
    scale, scale_ref = _scale(rng, scale_kind, N)
    kernel_kind = "tensor" if scale_kind == "tensor" else "channel"

    lib = _build(fam, M, K, N, kernel_kind, act)
    so = crossrun.export_aarch64(lib, tmp_path / "kernel.so")
    out = crossrun.run_aarch64(so, "ternary_linear",
                               [x, *fam.pack_weights(T, act), scale, bias, np.zeros((M, N), np.float32)])

    ref = ternary_linear_ref(x, T, scale_ref, bias, act=act)
    tol = 1e-5 if act == "int8" else 1e-4  # int8: exact integer sums, float rounding only
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


def loop_bodies(asm: str) -> list[list[str]]:
    """Mnemonics of every loop in an assembly listing: from a label to a branch back to it."""
    labels, insts = {}, []
    for line in asm.splitlines():
        line = line.split("//")[0].strip()
        label = re.match(r"^([.\w$]+):", line)
        if label:
            labels[label.group(1)] = len(insts)
        elif line and not line.startswith("."):
            mnemonic, _, operands = line.partition("\t") if "\t" in line else line.partition(" ")
            insts.append((mnemonic.strip(), operands.strip()))
    loops = []
    for i, (mnemonic, operands) in enumerate(insts):
        target = operands.split(",")[-1].strip()
        if mnemonic.startswith(("b", "cb", "tb")) and labels.get(target, i + 1) <= i:
            loops.append([m for m, _ in insts[labels[target]: i + 1]])
    return loops


def innermost_loop_with(asm: str, mnemonics: set[str]) -> Counter:
    """Instruction counts of the smallest loop that contains any of `mnemonics`."""
    bodies = [body for body in loop_bodies(asm) if mnemonics & set(body)]
    assert bodies, f"no loop contains any of {sorted(mnemonics)}"
    return Counter(min(bodies, key=len))


# K large enough that LLVM keeps the K loop a loop instead of unrolling it away.
ASM_SHAPE = (8, 256, 64)


@pytest.mark.parametrize("family", ["neon", "dotprod"])
def test_int8_inner_loop_uses_integer_dot_products(family):
    asm = _build(FAMILIES[family], *ASM_SHAPE, "channel", "int8").mod.inspect_source("asm")
    if family == "dotprod":
        inner = innermost_loop_with(asm, {"sdot"})
        assert inner["sdot"] >= 4
    else:
        assert not re.search(r"\bsdot\b", asm), "plain NEON (ARMv8.0) has no sdot"
        inner = innermost_loop_with(asm, {"smull", "smlal", "sadalp", "saddw"})
        assert inner["smull"] + inner["smlal"] >= 4 and inner["saddlp"] + inner["sadalp"] >= 4
    assert not FLOAT_MULTIPLIES & set(inner), f"float multiply in the int8 inner loop: {inner}"


@pytest.mark.parametrize("family", ["neon", "dotprod"])
def test_fp32_inner_loop_adds_and_subtracts_only(family):
    asm = _build(FAMILIES[family], *ASM_SHAPE, "channel", "fp32").mod.inspect_source("asm")
    inner = innermost_loop_with(asm, {"fadd", "fsub"})
    assert inner["fadd"] >= 4 and inner["fsub"] >= 4
    assert not FLOAT_MULTIPLIES & set(inner), f"float multiply by a weight in the inner loop: {inner}"
    assert not re.search(r"\bsdot\b", asm)
