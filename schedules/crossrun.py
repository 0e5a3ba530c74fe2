"""Run a cross-compiled TVM module for aarch64 on this host, through qemu-user.

Why: the ARM kernel families must be checked numerically without an ARM board. We cross-compile
the module with `aarch64-linux-gnu-g++`, take the aarch64 `libtvm_runtime.so` + `libtvm_ffi.so`
from the PyPI wheels of the pinned TVM, and call the function from a small C++ harness
(`crossrun_harness.cc`) run under `qemu-aarch64`. Emulated timings mean nothing; results do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeclip.errors import KernelError
from edgeclip.native import runtime_libs, toolchain

AARCH64_CXX = "aarch64-linux-gnu-g++"
AARCH64_CXX_PACKAGE = "g++-aarch64-linux-gnu"
AARCH64_WHEEL_PLATFORM = "manylinux_2_28_aarch64"
HARNESS_SOURCE = Path(__file__).with_name("crossrun_harness.cc")
NPY_HEADER = toolchain.RUNNER_DIR / "npy.h"  # the runner's .npy reader, shared


def missing_tools() -> list[str]:
    """Host programs this module needs but cannot find; empty when cross-running works."""
    qemu, sysroot, package = toolchain.EMULATORS["aarch64"]
    missing = [tool for tool in (AARCH64_CXX, qemu) if shutil.which(tool) is None]
    if not (Path(sysroot) / "lib" / "libc.so.6").exists():
        missing.append(f"{sysroot}/lib/libc.so.6 ({package})")
    return missing


def harness_binary() -> Path:
    """The aarch64 harness executable, rebuilt only when its sources change."""
    return toolchain.tvm_program("crossrun-harness-aarch64", AARCH64_CXX, AARCH64_CXX_PACKAGE,
                                 AARCH64_WHEEL_PLATFORM, HARNESS_SOURCE, (NPY_HEADER,))


def export_aarch64(lib, path: Path) -> Path:
    """Write a built TVM module as an aarch64 shared library (cross-compiled and linked)."""
    return toolchain.export_module(lib, path, AARCH64_CXX, AARCH64_CXX_PACKAGE)


def run_aarch64(module_so: Path, function: str, args: list[np.ndarray], timeout_s: float = 120) -> np.ndarray:
    """Call `function` of an aarch64 module under qemu with `args` (the last one is the output
    buffer, as TVM PrimFuncs are destination-passing) and return the output it wrote."""
    runtime = runtime_libs.runtime_dir(AARCH64_WHEEL_PLATFORM)
    harness = harness_binary()
    with tempfile.TemporaryDirectory(prefix="crossrun-") as tmp:
        paths = []
        for i, arr in enumerate(args):
            paths.append(Path(tmp) / f"arg{i}.npy")
            np.save(paths[-1], np.ascontiguousarray(arr))
        result = Path(tmp) / "result.npy"
        env = dict(os.environ, TVM_NUM_THREADS="1")
        cmd = [*toolchain.emulator_command("aarch64", (str(runtime / "lib"),)), str(harness), str(module_so), function,
               str(result), *map(str, paths)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
        if done.returncode != 0:
            raise KernelError(f"running {function} from {module_so} under qemu failed "
                              f"(exit {done.returncode}): {done.stderr.strip()[-1500:]}")
        return np.load(result)
