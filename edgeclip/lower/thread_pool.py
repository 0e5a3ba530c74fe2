"""TVM's CPU thread pool, sized to this host's physical cores.

TVM sizes its pool once per process, at the first parallel call, from TVM_NUM_THREADS, else
OMP_NUM_THREADS, else half the logical CPUs on x86 (it assumes two hyper-threads a core). On a VM
whose vCPUs are whole cores that is half the machine: on a 2-vCPU host a module built for 2
threads ran on 1 and was no faster than the 1-thread build. Setting TVM_NUM_THREADS to the
physical core count before that first call gives every parallel loop the cores it was built for.
"""

from __future__ import annotations

import os

from edgeclip.hostinfo import physical_cores

THREAD_ENV = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")  # TVM reads them in this order


def size_for_host() -> None:
    """Size the pool to the physical cores unless the user chose a count (either variable set).
    Must run before this process's first parallel TVM call; later calls change nothing."""
    if not any(name in os.environ for name in THREAD_ENV):
        os.environ["TVM_NUM_THREADS"] = str(physical_cores())
