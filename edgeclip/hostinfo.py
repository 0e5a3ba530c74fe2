"""What machine this is: the CPU model that results name (results from different hosts sit side
by side in bench/results and demo reports), and the physical cores that thread pools are sized to.

Standard library only.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. 'Intel(R) Xeon(R) Processor' on this
    project's VM), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores(cpu_root: Path = Path("/sys/devices/system/cpu")) -> int:
    """Cores this process may run on, SMT siblings counted once: what compute-bound kernels scale
    with. Read from each allowed CPU's `thread_siblings_list` (a VM's vCPUs are whole cores;
    a hyper-threaded host's pairs share a list), so neither is guessed from the CPU count."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        try:
            cores.add((cpu_root / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))
