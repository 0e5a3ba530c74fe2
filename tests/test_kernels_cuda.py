"""CUDA family (sm_87): TVM's generated CUDA source compiles to PTX with nvcc; numbers are
checked against numpy only where a CUDA GPU is present (CI has none)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import tvm

from edgeclip.schedules import cuda
from edgeclip.schedules.reference import ternary_linear_ref
from edgeclip.schedules.ternary import LinearShape
from edgeclip.targets import load_target

ORIN = load_target("jetson-orin-nano")  # the board with a [tvm.gpu] table: sm_87, aarch64 host


def _build(M, K, N, scale_kind, act, gpu_target):
    func = cuda.linear_primfunc(LinearShape(M, K, N, scale_kind, act), 1)
    return tvm.compile(tvm.IRModule({"ternary_linear": func}), target=gpu_target)


def _cuda_source(lib) -> str:
    (device_module,) = lib.mod.imports
    return device_module.inspect_source("cuda")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not found on PATH")
@pytest.mark.parametrize("act,M,K,N", [("int8", 5, 40, 24), ("fp32", 1, 64, 48)])
def test_generated_cuda_compiles_to_sm87_ptx(tmp_path, act, M, K, N):
    code = _cuda_source(_build(M, K, N, "channel", act, ORIN.tvm_gpu))
    updates = [line for line in code.splitlines() if re.search(r"acc_local_ptr\[.*\] = .*acc_local_ptr", line)]
    assert updates, "no accumulation found in the generated kernel"
    for line in updates:  # the accumulation never multiplies by a weight as a float
        assert ("__dp4a(" in line) if act == "int8" else ("*" not in line.split("=", 1)[1]), line
    source = tmp_path / "kernel.cu"
    source.write_text(code)
    ptx = tmp_path / "kernel.ptx"
    done = subprocess.run(["nvcc", "-ptx", "-arch=sm_87", str(source), "-o", str(ptx)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = ptx.read_text()
    assert ".target sm_87" in text
    assert ("dp4a.s32.s32" in text) == (act == "int8")  # s8 x s8 dot product of 4 per instruction


@pytest.mark.skipif(not tvm.cuda(0).exist, reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("act,scale_kind,M,K,N", [("int8", "channel", 5, 40, 24), ("fp32", "tensor", 3, 64, 48)])
def test_matches_numpy_on_gpu(act, scale_kind, M, K, N):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale = rng.uniform(0.5, 2.0, 1 if scale_kind == "tensor" else N).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    dev = tvm.cuda(0)
    args = [tvm.runtime.tensor(a, dev) for a in (x, *cuda.pack_weights(T, act), scale, bias, np.zeros((M, N), np.float32))]
    here = {"kind": "cuda", "arch": f"sm_{dev.compute_version.replace('.', '')}", "host": "llvm"}  # this GPU, this CPU
    _build(M, K, N, scale_kind, act, here)["ternary_linear"](*args)
    tol = 1e-5 if act == "int8" else 1e-4
    np.testing.assert_allclose(args[-1].numpy(), ternary_linear_ref(x, T, scale, bias, act=act), rtol=tol, atol=tol)
