"""The native tool chain of a target: its cross compiler, programs built against the target's TVM
runtime, module export, and the emulator that runs foreign binaries here.

Programs (the bundle runner, the kernel test harness) are compiled against the headers of the
target's TVM wheels and cached under the edgeclip cache by a hash of everything that goes into
them, so a second build (and the test suite) reuses the binary. Callers pass plain board facts
(compiler, its Debian package, wheel platform), not board objects: this layer sits below targets.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from edgeclip.errors import ToolchainError
from edgeclip.fsutil import cache_root, write_synced
from edgeclip.native import runtime_libs

RUNNER_DIR = Path(__file__).with_name("runner")
# The headers both programs compile; edgeclip.h is also the bundle's public include/edgeclip.h.
SHARED_HEADERS = ("args.h", "bpe.h", "cpu_features.h", "edgeclip.h", "exif.h", "host.h", "html.h", "image.h",
                  "image_decode.h", "index_file.h", "index_scan.h", "inflate.h", "jpeg_decode.h", "json.h", "labels.h",
                  "npy.h", "plan.h", "preprocess.h", "report.h", "request.h", "resample.h", "results.h", "tensors.h",
                  "tokenizer.h", "tower.h", "unicode.h", "unicode_tables.h", "variants.h", "wordpiece.h")
RUNNER_HEADERS = ("bench.h", "classify_command.h", "embed_command.h", "model_handle.h", "preprocess_command.h",
                  "search_command.h", "serve_command.h", "tokenize_command.h")
LIBRARY_NAME = "libedgeclip.so"
PUBLIC_HEADER = RUNNER_DIR / "edgeclip.h"
# The runtime decodes JPEG/PNG with stb_image, header-only: its folder is an include directory and
# its bytes part of the cache key. Only that folder, so a cross build sees no host headers.
STB_IMAGE = (Path("/usr/include/stb/stb_image.h"), "libstb-dev")
# JPEGs decode with libjpeg-turbo (SIMD, as Pillow), its static PIC archive of the target's
# architecture linked into the program, so the device needs nothing new. Its headers are staged in
# a folder of their own (jconfig.h is per architecture), again so no host header reaches a cross build.
LIBJPEG_HEADERS = ("jpeglib.h", "jmorecfg.h", "jerror.h")  # jerror.h: the message texts
LIBJPEG_PACKAGES = {"x86_64": "libjpeg62-turbo-dev", "aarch64": "libjpeg62-turbo-dev:arm64"}
# qemu-user binary, the Debian cross libc it loads target libraries from, and that libc's package.
EMULATORS = {"aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu", "libc6-arm64-cross")}
# Flags that keep a binary reproducible: no build paths or times leak into it.
_REPRODUCIBLE = ["-g0", "-ffile-prefix-map={src}=.", "-Wl,--build-id=none"]


def require_compiler(compiler: str, package: str) -> str:
    """The path of `compiler`, or an error naming the Debian package that provides it."""
    found = shutil.which(compiler)
    if found is None:
        raise ToolchainError(f"the C++ compiler {compiler} is not installed; install it with `apt-get install {package}`")
    return found


def tvm_program(name: str, compiler: str, package: str, wheel_platform: str, main_source: Path,
                headers: tuple[Path, ...] = (), rpath: str | None = None, shared_libs: tuple[Path, ...] = (),
                library: tuple[str, str] | None = None) -> Path:
    """`main_source` compiled and linked against the wheel platform's TVM runtime, cached.

    libtvm_runtime is linked although such programs call only tvm-ffi symbols: a module's
    parallel loops need its thread pool (TVMBackendParallelLaunch), found through this dependency.
    `rpath` (e.g. `$ORIGIN/../lib`) lets the program find the runtime without LD_LIBRARY_PATH.
    `shared_libs` are further libraries (shared or static archives) to link (their bytes join the
    cache key). With `library`
    (soname, symbol glob) the result is a shared library of that name exporting only the symbols
    the glob matches (a version script: inline C++ from the standard headers stays private too)."""
    path = require_compiler(compiler, package)
    runtime = runtime_libs.runtime_dir(wheel_platform)
    digest = hashlib.sha256()
    for source in (main_source, *headers, *shared_libs):
        digest.update(source.read_bytes())
    digest.update(f"{compiler}|{wheel_platform}|{rpath}|{library}|{_compiler_version(path)}".encode())
    binary = cache_root() / "programs" / f"{name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.part")
    include_dirs = sorted({str(h.parent) for h in headers})
    shared = []
    if library:
        soname, exports = library
        script = binary.with_name(f"{binary.name}.{os.getpid()}.map")
        script.write_text(f"{{ global: {exports}; local: *; }};\n")
        shared = ["-shared", "-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden", f"-Wl,-soname,{soname}",
                  f"-Wl,--version-script={script}", "-Wl,--no-undefined"]
    cmd = [path, "-std=c++17", "-O2", *shared, *(f.format(src=main_source.parent) for f in _REPRODUCIBLE),
           str(main_source), "-o", str(partial), f"-I{runtime / 'include'}", *(f"-I{d}" for d in include_dirs),
           *map(str, shared_libs), f"-L{runtime / 'lib'}", *([f"-Wl,-rpath,{rpath}"] if rpath else []),
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if library:
        script.unlink()
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ToolchainError(f"compiling {name} with {compiler} failed:\n{done.stderr[-2000:]}")
    partial.rename(binary)
    return binary


def _stb_image() -> Path:
    stb, stb_package = STB_IMAGE
    if not stb.is_file():
        raise ToolchainError(f"the runtime's image decoder {stb} is missing; install it with `apt-get install {stb_package}`")
    return stb


def libjpeg(arch: str, usr: Path = Path("/usr")) -> tuple[tuple[Path, ...], Path]:
    """(staged libjpeg headers, libjpeg.a) for `arch` from Debian's multiarch folders under `usr`,
    or an error naming the package to install."""
    package = LIBJPEG_PACKAGES.get(arch)
    if package is None:
        raise ToolchainError(f"no libjpeg-turbo package is known for {arch}")
    triplet = f"{arch}-linux-gnu"
    archive = usr / "lib" / triplet / "libjpeg.a"
    sources = [usr / "include" / name for name in LIBJPEG_HEADERS] + [usr / "include" / triplet / "jconfig.h"]
    missing = [p for p in (archive, *sources) if not p.is_file()]
    if missing:
        setup = "dpkg --add-architecture arm64 && apt-get update && " if package.endswith(":arm64") else ""
        raise ToolchainError(f"the runtime's JPEG decoder for {arch} ({missing[0]}) is missing; install it with "
                             f"`{setup}apt-get install {package}`")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    folder = cache_root() / "include" / f"libjpeg-{arch}-{digest}"
    if not folder.is_dir():
        staging = folder.with_name(f"{folder.name}.{os.getpid()}.part")
        staging.mkdir(parents=True, exist_ok=True)
        for source in sources:
            write_synced(staging / source.name, source.read_bytes())
        try:
            staging.rename(folder)
        except OSError:  # another process staged it first
            shutil.rmtree(staging)
    return tuple(folder / p.name for p in sources), archive


def runtime_library(compiler: str, package: str, wheel_platform: str) -> Path:
    """libedgeclip.so for a target (the C API of edgeclip.h, stb_image and libjpeg-turbo compiled
    in): RUNPATH `$ORIGIN`, since it sits in the bundle's lib/ beside libtvm_runtime.so and libtvm_ffi.so."""
    arch = runtime_libs.platform_arch(wheel_platform)
    jpeg_headers, jpeg = libjpeg(arch)
    headers = (*(RUNNER_DIR / h for h in SHARED_HEADERS), _stb_image(), *jpeg_headers)
    return tvm_program(f"libedgeclip-{arch}", compiler, package, wheel_platform, RUNNER_DIR / "edgeclip_lib.cc",
                       headers, rpath="$ORIGIN", shared_libs=(jpeg,), library=(LIBRARY_NAME, "edgeclip_*"))


def runner_binary(compiler: str, package: str, wheel_platform: str) -> Path:
    """The bundle runner for a target, linked to its libedgeclip.so: RUNPATH `$ORIGIN/../lib`, so
    on the device it finds lib/libedgeclip.so and the TVM runtime without LD_LIBRARY_PATH."""
    arch = runtime_libs.platform_arch(wheel_platform)
    jpeg_headers, jpeg = libjpeg(arch)
    headers = (*(RUNNER_DIR / h for h in (*SHARED_HEADERS, *RUNNER_HEADERS)), _stb_image(), *jpeg_headers)
    library = runtime_library(compiler, package, wheel_platform)
    return tvm_program(f"edgeclip-runner-{arch}", compiler, package, wheel_platform, RUNNER_DIR / "edgeclip_runner.cc",
                       headers, rpath="$ORIGIN/../lib", shared_libs=(library, jpeg))


def standalone_runner(dest: Path, compiler: str, package: str, wheel_platform: str) -> Path:
    """`dest`/bin/edgeclip-runner with its libraries in `dest`/lib, as in a bundle but without a
    model: enough for `search --vector` over an index (the search benchmark, format tests)."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    (dest / "lib").mkdir(exist_ok=True)
    runtime = runtime_libs.runtime_dir(wheel_platform) / "lib"
    for source, folder in ((runner_binary(compiler, package, wheel_platform), "bin"),
                           (runtime_library(compiler, package, wheel_platform), "lib"),
                           (runtime / "libtvm_runtime.so", "lib"), (runtime / "libtvm_ffi.so", "lib")):
        name = "edgeclip-runner" if folder == "bin" else (LIBRARY_NAME if source.name.startswith("libedgeclip")
                                                          else source.name)
        shutil.copy2(source, dest / folder / name)
    return dest / "bin" / "edgeclip-runner"


def _compiler_version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def export_module(lib, path: Path, compiler: str, package: str) -> Path:
    """Write a built TVM module as a shared library, compiled and linked by `compiler`."""
    from tvm.support import cc

    found = require_compiler(compiler, package)
    lib.export_library(str(path), fcompile=cc.cross_compiler(found, options=["-g0", "-Wl,--build-id=none"]))
    return path


def emulator_command(arch: str, library_dirs: tuple[str, ...] = ()) -> list[str]:
    """The prefix that runs a Linux binary of `arch` here: nothing for the host's own
    architecture, qemu-user with that architecture's Debian cross libc otherwise.

    The guest's LD_LIBRARY_PATH pins the C library to the cross sysroot's: on a host that also has
    Debian's multiarch libc6:arm64 (pulled in by libjpeg62-turbo-dev:arm64), the host's
    ld.so.cache would hand the sysroot's ld.so that other libc build, and threads then spin forever.
    `library_dirs` follow the sysroot's (the guest's LD_LIBRARY_PATH is this one, not the caller's)."""
    if arch == platform.machine():
        return []
    if arch not in EMULATORS:
        raise ToolchainError(f"no emulator known for {arch} binaries on this {platform.machine()} host")
    qemu, sysroot, package = EMULATORS[arch]
    if shutil.which(qemu) is None:
        raise ToolchainError(f"cannot emulate {arch}: {qemu} is not installed; apt-get install qemu-user")
    if not Path(sysroot, "lib").is_dir():
        raise ToolchainError(f"cannot emulate {arch}: its C library ({sysroot}) is missing; apt-get install {package}")
    return [qemu, "-L", sysroot, "-E", "LD_LIBRARY_PATH=" + ":".join((f"{sysroot}/lib", *library_dirs))]
