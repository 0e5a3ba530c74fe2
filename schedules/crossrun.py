"""Run a cross-compiled TVM module for aarch64 on this host, through qemu-user.

Why: the ARM kernel families must be checked numerically without an ARM board. We cross-compile
the module with `aarch64-linux-gnu-g++`, take the aarch64 `libtvm_runtime.so` + `libtvm_ffi.so`
from the PyPI wheels of the pinned TVM, and call the function from a small C++ harness
(`crossrun_harness.cc`) run under `qemu-aarch64`. Emulated timings mean nothing; results do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgeclip.bundle import runtime_libs
from edgeclip.errors import BundleError, KernelError
from edgeclip.fsutil import cache_root

AARCH64_CXX = "aarch64-linux-gnu-g++"
QEMU_AARCH64 = "qemu-aarch64"
AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu")
AARCH64_WHEEL_PLATFORM = "manylinux_2_28_aarch64"
HARNESS_SOURCE = Path(__file__).with_name("crossrun_harness.cc")
# npy.h is shared with the bundle runner, whose sources live with the bundle code.
NPY_HEADER_DIR = Path(runtime_libs.__file__).with_name("runner")


def missing_tools() -> list[str]:
    """Host programs this module needs but cannot find; empty when cross-running works."""
    needed = [AARCH64_CXX, QEMU_AARCH64]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if not (AARCH64_SYSROOT / "lib" / "libc.so.6").exists():
        missing.append(f"{AARCH64_SYSROOT}/lib/libc.so.6 (libc6-arm64-cross)")
    return missing


def aarch64_runtime() -> Path:
    """A directory with `lib/` (aarch64 libtvm_runtime.so, libtvm_ffi.so) and `include/` (tvm-ffi
    and dlpack headers), extracted once from the pinned PyPI wheels."""
    try:
        return runtime_libs.runtime_dir(AARCH64_WHEEL_PLATFORM)
    except BundleError as err:
        raise KernelError(str(err)) from err


def harness_binary() -> Path:
    """The aarch64 harness executable, rebuilt only when its source changes."""
    runtime = aarch64_runtime()
    sources = HARNESS_SOURCE.read_bytes() + (NPY_HEADER_DIR / "npy.h").read_bytes()
    digest = hashlib.sha256(sources).hexdigest()[:12]
    binary = cache_root() / f"crossrun_harness-{digest}"
    if binary.exists():
        return binary
    partial = binary.with_name(binary.name + f".{os.getpid()}")
    # libtvm_runtime is linked even though the harness calls only tvm-ffi: without it the
    # module's first parallel call crashes (no thread pool behind TVMBackendParallelLaunch).
    cmd = [AARCH64_CXX, "-std=c++17", "-O2", str(HARNESS_SOURCE), "-o", str(partial),
           f"-I{runtime / 'include'}", f"-I{NPY_HEADER_DIR}", f"-L{runtime / 'lib'}",
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise KernelError(f"building the aarch64 harness failed:\n{done.stderr[-2000:]}")
    partial.rename(binary)
    return binary


def export_aarch64(lib, path: Path) -> Path:
    """Write a built TVM module as an aarch64 shared library (cross-compiled and linked)."""
    from tvm.support import cc

    lib.export_library(str(path), fcompile=cc.cross_compiler(AARCH64_CXX))
    return path


def run_aarch64(module_so: Path, function: str, args: list[np.ndarray], timeout_s: float = 120) -> np.ndarray:
    """Call `function` of an aarch64 module under qemu with `args` (the last one is the output
    buffer, as TVM PrimFuncs are destination-passing) and return the output it wrote."""
    runtime = aarch64_runtime()
    harness = harness_binary()
    with tempfile.TemporaryDirectory(prefix="crossrun-") as tmp:
        paths = []
        for i, arr in enumerate(args):
            paths.append(Path(tmp) / f"arg{i}.npy")
            np.save(paths[-1], np.ascontiguousarray(arr))
        result = Path(tmp) / "result.npy"
        env = dict(os.environ, LD_LIBRARY_PATH=str(runtime / "lib"), TVM_NUM_THREADS="1")
        cmd = [QEMU_AARCH64, "-L", str(AARCH64_SYSROOT), str(harness), str(module_so), function,
               str(result), *map(str, paths)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
        if done.returncode != 0:
            raise KernelError(f"running {function} from {module_so} under qemu failed "
                              f"(exit {done.returncode}): {done.stderr.strip()[-1500:]}")
        return np.load(result)
