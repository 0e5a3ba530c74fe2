"""x86-64 ternary kernels (AVX2, AVX-512 VNNI) against the numpy reference, plus code checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm

from edgeclip.schedules import reference, x86, x86_avx2, x86_avx512
from edgeclip.schedules.ternary import LinearShape, embedding_prim_func, pack_embedding, unpacked_weights

# Each family's own CPU, whatever this host is (the asm checks compile both families anywhere).
MCPU = {x86_avx2: "haswell", x86_avx512: "cascadelake"}


def host_has(flag: str) -> bool:
    with open("/proc/cpuinfo") as f:
        return re.search(rf"\b{flag}\b", f.read()) is not None


def target(family, threads=1) -> dict:
    return {"kind": "llvm", "mcpu": MCPU[family], "num-cores": threads}


def build(family, M, K, N, scale_kind, act, threads=1):
    func = family.linear_primfunc(LinearShape(M, K, N, scale_kind, act), threads)
    return tvm.compile(tvm.IRModule({"main": func}), target=target(family, threads))


def run_linear(family, M, K, N, scale_kind, act, seed=0, groups=None):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.1, 10)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale = rng.uniform(0.01, 1, len(groups) if groups else (1 if scale_kind == "tensor" else N))
    scale_n = reference.expand_scale(scale, N, groups)
    kernel_scale = scale.astype(np.float32) if scale_kind == "tensor" else scale_n
    bias = rng.standard_normal(N).astype(np.float32)
    args = [x, *family.pack_weights(T, act), kernel_scale, bias]
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
    build(family, M, K, N, "tensor" if scale_kind == "tensor" else "channel", act)["main"](
        *[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy(), reference.ternary_linear_ref(x, T, scale_n, bias, act)


# ragged on purpose: M padded to the row block (7, 13), K to 16 and to odd chunk counts (72, 100,
# 1040 = 5 chunks of 52 k-groups), N to the tile (9, 40) and to an odd tile count (40: no 2-vector block)
SHAPES = [(1, 64, 16), (3, 72, 40), (50, 768, 96), (5, 100, 9), (7, 1040, 24), (13, 48, 72)]
CASES = [(shape, scale_kind, act) for shape in SHAPES for scale_kind in ("tensor", "channel")
         for act in ("int8", "fp32")] + [((50, 48, 24), "group", "int8"), ((3, 48, 24), "group", "fp32")]


def check(family, shape, scale_kind, act):
    M, K, N = shape
    groups = [N // 3] * 3 if scale_kind == "group" else None
    got, want = run_linear(family, M, K, N, scale_kind, act, groups=groups)
    if act == "int8":  # integer accumulation is exact; only the float rescale rounds
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("shape,scale_kind,act", CASES)
def test_avx2_matches_reference(shape, scale_kind, act):
    if not host_has("avx2"):
        pytest.skip("host CPU lacks avx2")
    check(x86_avx2, shape, scale_kind, act)


@pytest.mark.parametrize("shape,scale_kind,act", CASES[:4] + CASES[-2:])
def test_avx512_vnni_matches_reference(shape, scale_kind, act):
    if not host_has("avx512_vnni"):
        pytest.skip("host CPU lacks avx512_vnni: the AVX-512 VNNI kernel cannot execute here")
    check(x86_avx512, shape, scale_kind, act)


def test_int16_accumulation_at_its_bound_is_exact():
    """Activations all at +absmax (uint8 255) and weights all +1 or all -1: every int16 lane of
    the AVX2 register accumulator reaches +-64 * 510 = +-32640 before it is widened."""
    if not host_has("avx2"):
        pytest.skip("host CPU lacks avx2")
    M, K, N = 2, 3072, 16
    x = np.full((M, K), 3.5, np.float32)
    T = np.repeat(np.array([[1], [-1]], np.int8), N // 2, axis=0) * np.ones((1, K), np.int8)
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
    args = [x, *x86_avx2.pack_weights(T, "int8"), np.ones(N, np.float32), np.zeros(N, np.float32)]
    build(x86_avx2, M, K, N, "channel", "int8")["main"](*[tvm.runtime.tensor(a) for a in args], out)
    np.testing.assert_allclose(out.numpy(), reference.ternary_linear_ref(x, T, np.ones(N), None, "int8"), rtol=1e-6)


def test_unpacked_weight_baseline_matches_reference():
    """The int8-weight build of the same kernel (the bench's bandwidth baseline) is exact too."""
    if not host_has("avx2"):
        pytest.skip("host CPU lacks avx2")
    rng = np.random.default_rng(4)
    M, K, N = 7, 100, 40
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale, bias = rng.uniform(0.1, 1, N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    func = x86.schedule_linear(x86_avx2.FAMILY, LinearShape(M, K, N, "channel", "int8"), 1, packed=False)
    lib = tvm.compile(tvm.IRModule({"main": func}), target=target(x86_avx2))
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
    _, w_sum = x86_avx2.pack_weights(T, "int8")
    args = [x, unpacked_weights(T, x86_avx2.FAMILY.tile_n), w_sum, scale, bias]
    lib["main"](*[tvm.runtime.tensor(a) for a in args], out)
    want = reference.ternary_linear_ref(x, T, scale, bias, "int8")
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_multithreaded_matches_single_thread():
    rng = np.random.default_rng(1)
    M, K, N = 7, 128, 64
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    args = [x, *x86_avx2.pack_weights(T, "int8"), np.ones(N, np.float32), np.zeros(N, np.float32)]
    outs = []
    for threads in (1, 2):
        out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
        build(x86_avx2, M, K, N, "channel", "int8", threads)["main"](*[tvm.runtime.tensor(a) for a in args], out)
        outs.append(out.numpy())
    np.testing.assert_array_equal(outs[0], outs[1])


def assembly(family, act):
    return build(family, 4, 256, 64, "channel", act).mod.inspect_source("asm")


def test_avx512_emits_vpdpbusd():
    asm = assembly(x86_avx512, "int8")
    assert "vpdpbusd" in asm


def test_avx2_uses_maddubs_and_no_avx512():
    asm = assembly(x86_avx2, "int8")
    assert "vpmaddubsw" in asm
    assert "zmm" not in asm and "vpdpbusd" not in asm


def hot_loop(asm: str, instruction: str) -> list[str]:
    """Instruction lines of the basic block (from a `.LBB` label to the first jump) with the most
    `instruction`s."""
    blocks = [re.split(r"^\s+j\w+\s", block, maxsplit=1, flags=re.M)[0]
              for block in re.split(r"^\.LBB\w+:", asm, flags=re.M)]
    best = max(blocks, key=lambda b: len(re.findall(rf"\b{instruction}\b", b)))
    return [line.strip() for line in best.splitlines() if line.strip() and not line.strip().startswith((".", "#"))]


@pytest.mark.parametrize("family,product,accumulate", [(x86_avx2, "vpmaddubsw", "vpaddw"),
                                                      (x86_avx512, "vpdpbusd", None)])
def test_inner_loop_is_register_blocked(family, product, accumulate):
    """The hot loop holds rows x vecs products, each with its own register accumulator (AVX2:
    `vpaddw`, int16; no `vpmaddwd` widening inside), and no stack traffic (no spills)."""
    M = 50
    asm = build(family, M, 768, 96, "channel", "int8").mod.inspect_source("asm")
    loop = hot_loop(asm, product)
    ops = [line.split()[0] for line in loop]
    micro = family.FAMILY.micro_kernel
    blocked = x86.rows_for(M, micro.rows) * micro.vecs  # AVX2: 5 x 2, AVX-512: 6 x 3
    assert ops.count(product) == blocked
    if accumulate:
        assert ops.count(accumulate) == blocked
    assert "vpmaddwd" not in ops
    assert not any("(%rsp)" in line for line in loop)


def reduction_update(func) -> str:
    """Statements of the GEMM's update block (the per-weight inner loop), indices stripped."""
    script = func.script()
    start = script.index('T.sblock("acc_update')
    end = script.find("T.sblock(", start + 1)
    body = [line for line in script[start:end if end > 0 else None].splitlines()
            if not line.strip().startswith(("T.reads", "T.writes", "v_", "with"))]
    return re.sub(r"\[[^\[\]]*\]", "[]", "\n".join(body))


@pytest.mark.parametrize("family", [x86_avx2, x86_avx512])
@pytest.mark.parametrize("act", ["int8", "fp32"])
def test_no_float_multiply_by_a_weight(family, act):
    func = family.linear_primfunc(LinearShape(4, 256, 64, "channel", act), 1)
    update = reduction_update(func)
    assert " * " not in update  # add/sub/select, or a tensorized integer dot product
    if act == "int8":
        assert "call_llvm_pure_intrin" in update
    # the float multiplies of the compiled kernel (quantize, rescale) do not grow with N
    asm_small = build(family, 4, 256, 64, "channel", act).mod.inspect_source("asm")
    asm_large = build(family, 4, 256, 256, "channel", act).mod.inspect_source("asm")
    count = lambda asm: len(re.findall(r"\bv?(?:mul|fn?madd\w*)[sp]s\b", asm))  # noqa: E731
    assert count(asm_small) == count(asm_large)


def test_embedding_gather_matches_reference():
    rng = np.random.default_rng(2)
    V, D = 50, 36
    T = rng.integers(-1, 2, (V, D)).astype(np.int8)
    ids = rng.integers(0, V, 9).astype(np.int32)
    for per_row in (False, True):
        scale = rng.uniform(0.1, 1, V if per_row else 1).astype(np.float32)
        lib = tvm.compile(tvm.IRModule({"main": embedding_prim_func(len(ids), V, D, per_row)}),
                          target=target(x86_avx2))
        out = tvm.runtime.tensor(np.zeros((len(ids), D), np.float32))
        lib["main"](tvm.runtime.tensor(ids), tvm.runtime.tensor(pack_embedding(T)), tvm.runtime.tensor(scale), out)
        np.testing.assert_array_equal(out.numpy(), reference.embedding_ref(ids, T, scale))


def test_pack_weights_rejects_non_ternary():
    from edgeclip.errors import KernelError

    with pytest.raises(KernelError):
        x86_avx2.pack_weights(np.full((4, 4), 2, np.int8), "int8")
