"""The TVM runtime of a device: `libtvm_runtime.so`, `libtvm_ffi.so` and the tvm-ffi headers
for one wheel platform, taken from the pinned PyPI wheels (`pip download`, cached).

Why wheels: they are the exact runtime the host compiler was released with, built for old glibc
(manylinux), so the libraries run on stock board images with nothing installed. For the host's
own architecture the installed packages already are those wheels, so nothing is downloaded.
Also used by `edgeclip.schedules.crossrun` to run kernels under qemu. Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgeclip.errors import ToolchainError
from edgeclip.fsutil import cache_root

TVM_WHEEL = "apache-tvm==0.27.0.post1"
TVM_FFI_WHEEL = "apache-tvm-ffi==0.1.14.post1"
# The wheels' shared libraries do not depend on the CPython version; any published tag will do.
WHEEL_PYTHON = "3.11"
LIBRARIES = {"tvm/lib/libtvm_runtime.so": "lib/libtvm_runtime.so",
             "tvm_ffi/lib/libtvm_ffi.so": "lib/libtvm_ffi.so"}
HEADERS_PREFIX = "tvm_ffi/include/"


def platform_arch(wheel_platform: str) -> str:
    """`manylinux_2_28_aarch64` -> `aarch64` (what `uname -m` prints)."""
    for arch in ("aarch64", "x86_64"):
        if wheel_platform.endswith(arch):
            return arch
    raise ToolchainError(f"wheel platform {wheel_platform!r} is not an aarch64 or x86_64 manylinux tag")


def runtime_dir(wheel_platform: str) -> Path:
    """A folder with `lib/` (the two runtime libraries) and `include/` (tvm-ffi + dlpack headers)."""
    root = cache_root() / f"runtime-{wheel_platform}"
    if all((root / name).exists() for name in LIBRARIES.values()):
        return root
    cache_root().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".runtime-{wheel_platform}-", dir=cache_root()))
    try:
        if platform_arch(wheel_platform) == platform.machine() and _installed_matches_pins():
            _copy_installed(staging)
        else:
            for wheel in _download_wheels(wheel_platform):
                _extract(wheel, staging)
        missing = [name for name in LIBRARIES.values() if not (staging / name).exists()]
        if missing:
            raise ToolchainError(f"the {wheel_platform} TVM wheels lack {missing}; delete "
                              f"{cache_root() / 'wheels'} and retry")
        try:
            staging.rename(root)
        except OSError:  # another process finished first; its copy is as good as ours
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _installed_matches_pins() -> bool:
    try:
        return all(importlib.metadata.version(pin.split("==")[0]) == pin.split("==")[1]
                   for pin in (TVM_WHEEL, TVM_FFI_WHEEL))
    except importlib.metadata.PackageNotFoundError:
        return False


def _copy_installed(dest: Path) -> None:
    for dist in ("apache-tvm", "apache-tvm-ffi"):
        for file in importlib.metadata.distribution(dist).files or []:
            name = str(file)
            target = LIBRARIES.get(name)
            if target is None and name.startswith(HEADERS_PREFIX):
                target = "include/" + name.removeprefix(HEADERS_PREFIX)
            if target is not None:
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file.locate(), dest / target)


def _extract(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            target = LIBRARIES.get(name)
            if target is None and name.startswith(HEADERS_PREFIX) and not name.endswith("/"):
                target = "include/" + name.removeprefix(HEADERS_PREFIX)
            if target is not None:
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                (dest / target).write_bytes(archive.read(name))


def _download_wheels(wheel_platform: str) -> list[Path]:
    dest = cache_root() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"apache_tvm*{platform_arch(wheel_platform)}*.whl"
    wheels = sorted(dest.glob(pattern))
    if len(wheels) < 2:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", WHEEL_PYTHON, "--platform", wheel_platform, "--dest", str(dest),
               TVM_WHEEL, TVM_FFI_WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolchainError(f"could not download the {wheel_platform} TVM wheels "
                              f"({done.stderr.strip()[-300:]}); check PyPI access or put the "
                              f"{TVM_WHEEL} and {TVM_FFI_WHEEL} wheels for it into {dest}")
        wheels = sorted(dest.glob(pattern))
    return wheels
