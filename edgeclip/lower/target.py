"""Which kernel family and TVM target a target name means.

Only the host (`x86-64`) exists so far; board TOML files (`edgeclip.targets`) plug in here,
so this is the one place that maps a name to a family.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeclip.errors import TargetError

HOST_TARGET = "x86-64"


@dataclass(frozen=True)
class LowerTarget:
    """A resolved target: its name, the schedules family module name, and the TVM target dict."""

    name: str
    family: str  # module under edgeclip.schedules, e.g. "x86_avx2"
    tvm_target: dict
    threads: int

    def tvm(self):
        import tvm

        return tvm.target.Target(self.tvm_target)


def host_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """CPU feature flags of this machine (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_target(name: str, threads: int | None = None) -> LowerTarget:
    """Map a target name to a family + TVM target; `threads` None means every core of the host."""
    if name != HOST_TARGET:
        raise TargetError(f"unknown target {name!r}; this edgeclip can compile for {HOST_TARGET!r} (the host)")
    threads = threads or os.cpu_count() or 1
    flags = host_cpu_flags()
    if "avx512_vnni" in flags:
        family, mcpu = "x86_avx512", "cascadelake"
    elif "avx2" in flags:
        family, mcpu = "x86_avx2", "haswell"
    else:
        raise TargetError("this host has neither AVX2 nor AVX-512 VNNI; the x86-64 kernels need one of them")
    return LowerTarget(name, family, {"kind": "llvm", "mcpu": mcpu, "num-cores": threads}, threads)
