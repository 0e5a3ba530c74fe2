"""Native code for a target: its cross toolchain, the runner binary, and module export.

The runner is compiled from `runner/` with the target's compiler against the headers of the
target's TVM wheels, and cached under the edgeclip cache by a hash of everything that goes into
it, so a second build (and the test suite) reuses the binary.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from edgeclip.bundle import runtime_libs
from edgeclip.errors import BundleError
from edgeclip.fsutil import cache_root
from edgeclip.targets import Target

RUNNER_DIR = Path(__file__).with_name("runner")
RUNNER_SOURCES = ("edgeclip_runner.cc", "npy.h")
# Flags that keep the binary reproducible: no build paths or times leak into it.
# qemu-user binary, the Debian cross libc it loads target libraries from, and that libc's package.
EMULATORS = {"aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu", "libc6-arm64-cross")}
_REPRODUCIBLE = ["-g0", "-ffile-prefix-map={src}=.", "-Wl,--build-id=none"]


def require_toolchain(target: Target) -> str:
    """The target's C++ compiler, or an error naming the Debian package that provides it."""
    found = shutil.which(target.cross_compiler)
    if found is None:
        raise BundleError(
            f"the C++ compiler for {target.name} ({target.cross_compiler}) is not installed; "
            f"install it with `apt-get install {target.cross_package}`"
        )
    return found


def runner_binary(target: Target) -> Path:
    """The runner for `target`: RUNPATH `$ORIGIN/../lib`, so on the device it finds the bundled
    libtvm_runtime.so / libtvm_ffi.so without LD_LIBRARY_PATH."""
    compiler = require_toolchain(target)
    runtime = runtime_libs.runtime_dir(target.wheel_platform)
    digest = hashlib.sha256()
    for name in RUNNER_SOURCES:
        digest.update((RUNNER_DIR / name).read_bytes())
    digest.update(f"{target.cross_compiler}|{target.wheel_platform}|{_compiler_version(compiler)}".encode())
    binary = cache_root() / "runners" / f"edgeclip-runner-{target.arch}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.part")
    # libtvm_runtime is linked although only tvm-ffi symbols are called: the module's parallel
    # loops need its thread pool (TVMBackendParallelLaunch), found through this dependency.
    cmd = [compiler, "-std=c++17", "-O2", *(f.format(src=RUNNER_DIR) for f in _REPRODUCIBLE),
           str(RUNNER_DIR / "edgeclip_runner.cc"), "-o", str(partial),
           f"-I{runtime / 'include'}", f"-I{RUNNER_DIR}", f"-L{runtime / 'lib'}",
           "-Wl,-rpath,$ORIGIN/../lib", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BundleError(f"compiling the runner for {target.name} failed:\n{done.stderr[-2000:]}")
    partial.rename(binary)
    return binary


def _compiler_version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def export_module(lib, path: Path, target: Target) -> Path:
    """Write a built TVM module as a shared library for `target` (linked by its compiler)."""
    from tvm.support import cc

    compiler = require_toolchain(target)
    lib.export_library(str(path), fcompile=cc.cross_compiler(compiler, options=["-g0", "-Wl,--build-id=none"]))
    return path


def emulator_command(arch: str) -> list[str]:
    """The prefix that runs a Linux binary of `arch` here: nothing for the host's own
    architecture, qemu-user with that architecture's Debian cross libc otherwise."""
    if arch == platform.machine():
        return []
    if arch not in EMULATORS:
        raise BundleError(f"no emulator known for {arch} binaries on this {platform.machine()} host")
    qemu, sysroot, package = EMULATORS[arch]
    if shutil.which(qemu) is None:
        raise BundleError(f"cannot emulate {arch}: {qemu} is not installed; apt-get install qemu-user")
    if not Path(sysroot, "lib").is_dir():
        raise BundleError(f"cannot emulate {arch}: its C library ({sysroot}) is missing; apt-get install {package}")
    return [qemu, "-L", sysroot]
