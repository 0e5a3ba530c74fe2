"""Boards as TOML data: find, parse and validate them.

Shipped boards live beside this file; users add (or override) boards by dropping `NAME.toml`
files into the folder named by `$EDGECLIP_TARGETS_DIR`. Every validation error names the file,
the field and the problem, because a board file is hand-written and typos are the common case.
`auto` cores and memory (the x86-64 targets) are resolved from this machine at load time; code
is never compiled for the build host's CPU model, only for a fixed LLVM CPU.

A fat target lists `members`, other targets of one architecture with distinct kernel families,
best first: a bundle for it carries one ternary module per member and the runner picks at load.
"""

from __future__ import annotations

import os
import platform
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeclip.errors import TargetError
from edgeclip.hostinfo import physical_cores

SHIPPED_DIR = Path(__file__).parent
USER_DIR_ENV = "EDGECLIP_TARGETS_DIR"
KERNEL_FAMILIES = ("arm_neon", "arm_dotprod", "x86_avx2", "x86_avx512")
ARCHES = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}
AUTO = "auto"
PARAM = "param"  # `cuda_arch` / `tvm.gpu.arch` of a board whose GPU arch the user gives (`--cuda-arch`)
# The GPU arches CUDA 13's nvcc builds for (`nvcc --list-gpu-arch`): Turing sm_75 and newer.
CUDA_ARCHES = ("sm_75", "sm_80", "sm_86", "sm_87", "sm_88", "sm_89", "sm_90", "sm_100", "sm_103", "sm_110",
               "sm_120", "sm_121")

_TOP_FIELDS = {
    "name": str, "description": str, "arch": str, "cores": (int, str), "memory_mb": (int, str),
    "kernel_family": str, "wheel_platform": str, "cuda_arch": str, "cross": dict, "tvm": dict, "members": list,
}
_REQUIRED = ("name", "arch", "cores", "memory_mb", "kernel_family", "wheel_platform", "cross", "tvm")
# A fat target names its members and may describe and size itself; the rest comes from the members.
_FAT_FIELDS = ("name", "description", "members", "cores", "memory_mb")
MAX_MEMBERS = 8
_CROSS_FIELDS = {"compiler": str, "debian_package": str}
# [tvm.cpu] and [tvm.gpu]: the TVM target options a board may set, and their types.
_CPU_FIELDS = {"kind": str, "mtriple": str, "mcpu": str, "mattr": list, "num-cores": int}
_GPU_FIELDS = {"kind": str, "arch": str}
MAX_CORES = 1024
MAX_MEMORY_MB = 1 << 24  # 16 TiB
# Patterns of the text fields: names the tools are run with, never a shell fragment.
_PATTERNS = {
    "wheel_platform": re.compile(r"[a-z0-9_]{1,64}"),
    "cross.compiler": re.compile(r"[A-Za-z0-9_.+/-]{1,128}"),
    "cross.debian_package": re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}"),
    "tvm.cpu.mcpu": re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}"),
    "tvm.gpu.arch": re.compile(r"sm_[0-9]{2,3}[a-z]?"),
}
_FEATURE = re.compile(r"[+-][a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Target:
    """One board. `tvm_cpu` / `tvm_gpu` are TVM 0.27 target dicts (the GPU one carries its host)."""

    name: str
    description: str
    arch: str  # what `uname -m` prints on the board
    cores: int
    memory_mb: int
    kernel_family: str  # a module of edgeclip.schedules
    wheel_platform: str  # pip --platform tag of the board's TVM runtime wheels
    cross_compiler: str
    cross_package: str  # the Debian package that provides cross_compiler
    tvm_cpu: dict
    tvm_gpu: dict | None = None
    cuda_arch: str | None = None
    source: Path | None = field(default=None, compare=False)
    members: tuple[Target, ...] = ()  # a fat target's single-family targets, best first

    @property
    def variants(self) -> tuple[Target, ...]:
        """The single-family targets a bundle for this target compiles ternary modules for, best
        first: a fat target's members, else the target itself. The target's own kernel family
        and TVM target are its least demanding member's (the last), where the fp32 baseline goes."""
        return self.members or (self,)

    @property
    def compiler(self) -> tuple[str, str]:
        """(cross compiler, the Debian package that provides it): what `edgeclip.native.toolchain` takes."""
        return self.cross_compiler, self.cross_package

    @property
    def gpu_arch_is_parameter(self) -> bool:
        """The board has an NVIDIA GPU of any arch (`cuda-host`): `with_cuda_arch` names it."""
        return self.cuda_arch == PARAM

    @property
    def is_host_arch(self) -> bool:
        return self.arch == platform.machine()

    def to_dict(self) -> dict:
        """Plain data for manifests and `edgeclip targets show` (no host-specific paths)."""
        return {
            "name": self.name, "description": self.description, "arch": self.arch, "cores": self.cores,
            "memory_mb": self.memory_mb, "kernel_family": self.kernel_family,
            "wheel_platform": self.wheel_platform, "cuda_arch": self.cuda_arch,
            "cross": {"compiler": self.cross_compiler, "debian_package": self.cross_package},
            "tvm": {"cpu": self.tvm_cpu, **({"gpu": self.tvm_gpu} if self.tvm_gpu else {})},
            **({"members": [m.name for m in self.members]} if self.members else {}),
        }


def target_files() -> dict[str, Path]:
    """Every known board name and its file; a user file overrides a shipped one of the same name."""
    found = {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.toml"))}
    user_dir = os.environ.get(USER_DIR_ENV)
    if user_dir:
        if not Path(user_dir).is_dir():
            raise TargetError(f"${USER_DIR_ENV}={user_dir} is not a directory; point it at a folder of board TOMLs")
        found.update({p.stem: p for p in sorted(Path(user_dir).glob("*.toml"))})
    return found


def load_target(name: str) -> Target:
    """The board called `name` (shipped or user), validated and with `auto` values resolved."""
    files = target_files()
    if name not in files:
        raise TargetError(
            f"unknown target {name!r}; known: {', '.join(sorted(files))} "
            f"(add a board by putting {name}.toml into ${USER_DIR_ENV})"
        )
    return load_target_file(files[name])


def list_targets() -> list[Target]:
    return [load_target_file(path) for path in target_files().values()]


def load_target_file(path, fat: bool = True) -> Target:
    """The board file at `path`, validated; `fat=False` refuses a fat target (a fat one's members)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise TargetError(f"{path}: not valid TOML ({err}); fix the syntax") from err
    except OSError as err:
        raise TargetError(f"{path}: cannot read the board file ({err})") from err
    if "members" in data:
        if not fat:
            raise _fail(path, "members", "makes this a fat target, which cannot be the member of another")
        return _parse_fat(data, path)
    return _parse(data, path)


def _fail(path: Path, field_name: str, problem: str) -> TargetError:
    return TargetError(f"{path}: field `{field_name}` {problem}")


def _check_fields(table: dict, spec: dict, prefix: str, path: Path) -> None:
    for key, value in table.items():
        if key not in spec:
            raise _fail(path, prefix + key, f"is not a known field (known: {', '.join(sorted(spec))})")
        if not isinstance(value, spec[key]) or isinstance(value, bool):
            raise _fail(path, prefix + key, f"has the wrong type {type(value).__name__}")


def _parse(data: dict, path: Path) -> Target:
    _check_fields(data, _TOP_FIELDS, "", path)
    for key in _REQUIRED:
        if key not in data:
            raise _fail(path, key, "is missing")
    if data["name"] != path.stem:
        raise _fail(path, "name", f"is {data['name']!r} but must equal the file name {path.stem!r}")
    arch = data["arch"]
    if arch not in ARCHES:
        raise _fail(path, "arch", f"is {arch!r}; supported: {', '.join(ARCHES)}")
    cross = data["cross"]
    _check_fields(cross, _CROSS_FIELDS, "cross.", path)
    for key in ("compiler", "debian_package"):
        if key not in cross:
            raise _fail(path, f"cross.{key}", "is missing")
    _check_text(data["wheel_platform"], "wheel_platform", path)
    _check_text(cross["compiler"], "cross.compiler", path)
    _check_text(cross["debian_package"], "cross.debian_package", path)
    tvm_cpu, tvm_gpu = _tvm_tables(data["tvm"], arch, path)
    cores = _count(data["cores"], "cores", path, physical_cores, arch)
    memory = _count(data["memory_mb"], "memory_mb", path, _host_memory_mb, arch, MAX_MEMORY_MB)
    family = data["kernel_family"]
    if family not in KERNEL_FAMILIES:
        raise _fail(path, "kernel_family", f"is {family!r}; known: {', '.join(KERNEL_FAMILIES)}")
    tvm_cpu.setdefault("num-cores", cores)
    if tvm_gpu is not None:
        tvm_gpu["host"] = dict(tvm_cpu)
    cuda_arch = data.get("cuda_arch")
    if (tvm_gpu is None) != (cuda_arch is None) or (tvm_gpu and tvm_gpu.get("arch") != cuda_arch):
        raise _fail(path, "cuda_arch", "must be given exactly when [tvm.gpu] is, and equal its `arch`")
    return Target(
        name=data["name"], description=data.get("description", data["name"]), arch=arch, cores=cores,
        memory_mb=memory, kernel_family=family, wheel_platform=data["wheel_platform"],
        cross_compiler=cross["compiler"], cross_package=cross["debian_package"], tvm_cpu=tvm_cpu,
        tvm_gpu=tvm_gpu, cuda_arch=cuda_arch, source=path,
    )


def _parse_fat(data: dict, path: Path) -> Target:
    """A fat target: its members loaded (user files override shipped ones, as for any name) and
    checked to share one architecture, runtime wheel and compiler with distinct kernel families."""
    for key in data:
        if key not in _FAT_FIELDS:
            raise _fail(path, key, f"cannot be set in a fat target (it takes its members'; a fat target sets only "
                                   f"{', '.join(_FAT_FIELDS)})")
    if not isinstance(data.get("name"), str) or data["name"] != path.stem:
        raise _fail(path, "name", f"is {data.get('name')!r} but must equal the file name {path.stem!r}")
    names = data["members"]
    if (not 2 <= len(names) <= MAX_MEMBERS or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)):
        raise _fail(path, "members", f"is {str(names)[:60]}; list 2 to {MAX_MEMBERS} distinct target names, best first")
    files = target_files()
    unknown = [n for n in names if n not in files]
    if unknown:
        raise _fail(path, "members", f"names unknown target {unknown[0]!r}; known: {', '.join(sorted(files))}")
    try:
        members = tuple(load_target_file(files[n], fat=False) for n in names)
    except TargetError as err:
        raise _fail(path, "members", f"names a target that does not load as a member ({err})") from err
    last = members[-1]
    for member in members[:-1]:
        for attr in ("arch", "wheel_platform", "cross_compiler"):
            if getattr(member, attr) != getattr(last, attr):
                raise _fail(path, "members", f"mixes {attr} {getattr(member, attr)!r} ({member.name}) and "
                                             f"{getattr(last, attr)!r} ({last.name}); members share one")
    families = [m.kernel_family for m in members]
    if len(set(families)) != len(families):
        raise _fail(path, "members", f"repeats a kernel family ({', '.join(families)}); each member brings its own")
    cores = _count(data.get("cores", last.cores), "cores", path, physical_cores, last.arch)
    memory = _count(data.get("memory_mb", last.memory_mb), "memory_mb", path, _host_memory_mb, last.arch, MAX_MEMORY_MB)
    return Target(
        name=data["name"], description=data.get("description", data["name"]), arch=last.arch, cores=cores,
        memory_mb=memory, kernel_family=last.kernel_family, wheel_platform=last.wheel_platform,
        cross_compiler=last.cross_compiler, cross_package=last.cross_package,
        tvm_cpu={**last.tvm_cpu, "num-cores": cores}, tvm_gpu=last.tvm_gpu, cuda_arch=last.cuda_arch,
        source=path, members=members,
    )


def _tvm_tables(tvm: dict, arch: str, path: Path) -> tuple[dict, dict | None]:
    unknown = set(tvm) - {"cpu", "gpu"}
    if unknown:
        raise _fail(path, f"tvm.{sorted(unknown)[0]}", "is not a known table (use [tvm.cpu] and [tvm.gpu])")
    cpu = tvm.get("cpu")
    if not isinstance(cpu, dict):
        raise _fail(path, "tvm.cpu", "is missing (a TVM target table with kind = \"llvm\")")
    _check_fields(cpu, _CPU_FIELDS, "tvm.cpu.", path)
    if cpu.get("kind") != "llvm":
        raise _fail(path, "tvm.cpu.kind", f"is {cpu.get('kind')!r}; the CPU target must be \"llvm\"")
    if cpu.get("mtriple") != ARCHES[arch]:
        raise _fail(path, "tvm.cpu.mtriple", f"is {cpu.get('mtriple')!r}; arch {arch} needs {ARCHES[arch]!r}")
    if "mcpu" in cpu:
        _check_text(cpu["mcpu"], "tvm.cpu.mcpu", path)  # whether LLVM knows it: lower.target, at build time
    mattr = cpu.get("mattr", [])
    if len(mattr) > 64 or not all(isinstance(f, str) and _FEATURE.fullmatch(f) for f in mattr):
        raise _fail(path, "tvm.cpu.mattr", f"is {str(mattr)[:60]}; give a list of features such as [\"+neon\"]")
    if "num-cores" in cpu:
        _count(cpu["num-cores"], "tvm.cpu.num-cores", path, None, arch)
    gpu = tvm.get("gpu")
    if gpu is not None and (not isinstance(gpu, dict) or gpu.get("kind") != "cuda" or "arch" not in gpu):
        raise _fail(path, "tvm.gpu", "must be a table with kind = \"cuda\" and an `arch` such as \"sm_87\"")
    if gpu is not None:
        _check_fields(gpu, _GPU_FIELDS, "tvm.gpu.", path)
        if gpu["arch"] != PARAM:
            _check_text(gpu["arch"], "tvm.gpu.arch", path)
    return dict(cpu), None if gpu is None else dict(gpu)


def with_cuda_arch(board: Target, arch: str | None) -> Target:
    """`board` with its GPU arch given by the user (`--cuda-arch`), never read from this machine:
    the bundle runs elsewhere. Only a `param` board takes a new arch; a fixed one may be repeated."""
    if arch is None:
        return board
    if arch not in CUDA_ARCHES:
        raise TargetError(f"--cuda-arch {arch[:20]!r} is not a GPU arch CUDA 13 builds for; give one of "
                          f"{', '.join(CUDA_ARCHES)} (e.g. sm_90 for H100/H200, sm_87 for Jetson Orin)")
    if board.cuda_arch is None:
        raise TargetError(f"--cuda-arch {arch} was given, but {board.name} has no NVIDIA GPU ([tvm.gpu] in its "
                          "board file); drop --cuda-arch or pick a target with a GPU, e.g. cuda-host")
    if not board.gpu_arch_is_parameter:
        if arch != board.cuda_arch:
            raise TargetError(f"{board.name}'s GPU is {board.cuda_arch} (fixed by its board file), not {arch}; "
                              f"drop --cuda-arch or give {board.cuda_arch}")
        return board
    return replace(board, cuda_arch=arch, tvm_gpu={**board.tvm_gpu, "arch": arch})


def _check_text(value: str, name: str, path: Path) -> None:
    if not _PATTERNS[name].fullmatch(value):
        raise _fail(path, name, f"is {value[:60]!r}, which does not look like one (expected {_PATTERNS[name].pattern})")


def _count(value, name: str, path: Path, detect, arch: str, limit: int = MAX_CORES) -> int:
    """A positive integer field up to `limit`, or (where `detect` is given) "auto" on its own host."""
    if value == AUTO and detect is not None:
        _require_host(arch, name, path)
        return detect()
    if type(value) is not int or not 0 < value <= limit:
        auto = " or \"auto\" (host targets only)" if detect is not None else ""
        raise _fail(path, name, f"is {repr(value)[:40]}; give a positive integer up to {limit}{auto}")
    return value


def _require_host(arch: str, name: str, path: Path) -> None:
    if arch != platform.machine():
        raise _fail(path, name, f"is \"auto\" but this host is {platform.machine()}, not {arch}; "
                                "write the board's value instead")


def _host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
