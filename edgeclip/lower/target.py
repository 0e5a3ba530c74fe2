"""Which kernel family and TVM target a target name means, read from the board TOMLs.

`edgeclip.targets` owns the board descriptions (and detects the host's x86 family); this module
only turns one into what lowering needs: the kernel family the board names, its TVM target with
the thread count, and the board itself.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache

from edgeclip.errors import TargetError
from edgeclip.formats import cpu_features as features_table
from edgeclip.lower.thread_pool import size_for_host
from edgeclip.targets import Target, load_target, load_target_file, with_cuda_arch
from edgeclip.targets.loader import target_files

# What code that runs on this machine is built for, per arch: a fat target, of which `host_target`
# takes the best member this CPU runs.
HOST_TARGETS = {"x86_64": "x86-64", "aarch64": "generic-aarch64"}
DEVICES = ("cpu", "cuda")  # where a compiled tower runs: the board's CPU, or its NVIDIA GPU
GPU_FAMILY = "cuda"  # the kernel family of every NVIDIA GPU (dp4a: sm_61 and newer)


@dataclass(frozen=True)
class LowerTarget:
    """A resolved target: its name, the schedules family module name, and the TVM target dict
    (for a GPU the CUDA target, with the board's CPU as its host)."""

    name: str
    family: str  # module under edgeclip.schedules, e.g. "x86_avx2"
    tvm_target: dict
    threads: int
    board: Target  # the board description: its arch and the compiler that links modules for it
    device: str = "cpu"  # one of DEVICES

    def tvm(self):
        import tvm

        return tvm.target.Target(self.tvm_target)


def resolve_target(target: str | Target, threads: int | None = None, device: str = "cpu",
                   cuda_arch: str | None = None) -> LowerTarget:
    """Map a board (or its name) to a family + TVM target; `threads` None means every core of the board.
    `device="cuda"` lowers for the board's GPU (`cuda_arch` names it where the board leaves it open).

    Every compile, tune and profile starts here, so this is where the process's TVM thread pool
    is sized (`thread_pool.size_for_host`) before anything runs."""
    size_for_host()
    if device not in DEVICES:
        raise TargetError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    board = with_cuda_arch(target if isinstance(target, Target) else load_target(target), cuda_arch)
    check_mcpu(board)
    threads = board.cores if threads is None else threads  # `x86-64`: cores = "auto", this host's
    tvm_target = {**board.tvm_cpu, "num-cores": threads}
    if device == "cpu":
        if cuda_arch is not None:
            raise TargetError(f"--cuda-arch {cuda_arch} only applies with --device cuda; drop it or add --device cuda")
        return LowerTarget(board.name, board.kernel_family, tvm_target, threads, board)
    if board.tvm_gpu is None:
        raise TargetError(f"{board.name} has no NVIDIA GPU ([tvm.gpu] in its board file); "
                          "use --device cpu or a target with a GPU, e.g. cuda-host --cuda-arch sm_90")
    if board.gpu_arch_is_parameter:
        raise TargetError(f"{board.name} runs on any NVIDIA GPU: name its arch with --cuda-arch, "
                          "e.g. sm_90 for H100/H200 (it is never read from this machine)")
    return LowerTarget(board.name, GPU_FAMILY, {**board.tvm_gpu, "host": tvm_target}, threads, board, device)


def check_mcpu(board: Target) -> None:
    """Refuse a board whose `mcpu` this TVM's LLVM does not know for its triple: LLVM would only log
    an error and compile for a generic CPU, so a typo would silently cost the board its kernels."""
    mcpu, triple = board.tvm_cpu.get("mcpu"), board.tvm_cpu["mtriple"]
    if mcpu is not None and not _llvm_knows(mcpu, triple):
        cpus = _llvm_cpus(triple)
        near = difflib.get_close_matches(mcpu, cpus, n=5, cutoff=0.6) or cpus[:8]
        raise TargetError(f"{board.source or board.name}: field `tvm.cpu.mcpu` is {mcpu!r}, which LLVM does not "
                          f"know for {triple}; use one it knows, e.g. {', '.join(near)} ({len(cpus)} in all)")


@cache
def _llvm_knows(mcpu: str, triple: str) -> bool:
    from tvm.target import codegen

    return bool(codegen.llvm_is_valid_cpu(mcpu, triple))


def _llvm_cpus(triple: str) -> list[str]:
    import tvm
    from tvm.target import codegen

    return sorted(str(cpu) for cpu in codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": triple})))


def cpu_features(board: Target) -> list[str]:
    """The CPU features (Linux names) code compiled for the board's TVM CPU target may use: what
    LLVM switches on for its `mcpu` plus `mattr`, through formats.cpu_features' table. The
    fp32 baseline is compiled for the same target, so this holds for every module of a bundle."""
    import tvm
    from tvm.target import codegen

    target = tvm.target.Target(board.tvm_cpu)
    return features_table.from_llvm(board.arch, (str(f) for f in codegen.llvm_get_cpu_features(target)))


def alternatives(board: Target) -> list[tuple[str, list[str]]]:
    """The other known boards of the board's architecture and their CPU features, the closest
    name first (rpi4 for rpi5): what a refusal may suggest building for instead. Boards that do
    not load here (an `auto` board of another architecture, a broken user file) are left out, and
    so is `cuda-host`: it names any NVIDIA GPU machine, not a CPU to build for."""
    found = []
    for name, path in target_files().items():
        try:
            other = load_target_file(path)
        except TargetError:
            continue
        if name != board.name and other.arch == board.arch and not other.gpu_arch_is_parameter:
            found.append((name, cpu_features(other)))
    return sorted(found, key=lambda item: (-difflib.SequenceMatcher(None, board.name, item[0]).ratio(), item[0]))


def host_target() -> str:
    """The single-family target for code that runs on this machine (compile, tune, benchmarks,
    the demo's host bundle): on x86-64 the first member of the fat `x86-64` whose CPU features
    this CPU has (x86-64-vnni before x86-64-v3), read from /proc/cpuinfo, never its LLVM CPU model."""
    import platform
    from pathlib import Path

    machine = platform.machine()
    if machine not in HOST_TARGETS:
        raise TargetError(f"no board description runs on this {machine} machine; edgeclip builds for "
                          f"{', '.join(HOST_TARGETS)} hosts")
    members = load_target(HOST_TARGETS[machine]).variants
    if machine != "x86_64":
        return members[0].name
    flags = next((line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), "")
    have = set(features_table.from_flags("x86_64", flags))
    return next((m.name for m in members if set(cpu_features(m)) <= have), members[-1].name)
