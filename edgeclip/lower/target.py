"""Which kernel family and TVM target a target name means, read from the board TOMLs.

`edgeclip.targets` owns the board descriptions (and detects the host's x86 family); this module
only turns one into what lowering needs: the kernel family the board names, its TVM target with
the thread count, and the board itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeclip.lower.thread_pool import size_for_host
from edgeclip.targets import Target, load_target

HOST_TARGET = "x86-64"


@dataclass(frozen=True)
class LowerTarget:
    """A resolved target: its name, the schedules family module name, and the TVM target dict."""

    name: str
    family: str  # module under edgeclip.schedules, e.g. "x86_avx2"
    tvm_target: dict
    threads: int
    board: Target  # the board description: its arch and the compiler that links modules for it

    def tvm(self):
        import tvm

        return tvm.target.Target(self.tvm_target)


def resolve_target(target: str | Target, threads: int | None = None) -> LowerTarget:
    """Map a board (or its name) to a family + TVM target; `threads` None means every core of the board.

    Every compile, tune and profile starts here, so this is where the process's TVM thread pool
    is sized (`thread_pool.size_for_host`) before anything runs."""
    size_for_host()
    board = target if isinstance(target, Target) else load_target(target)
    threads = board.cores if threads is None else threads  # `x86-64`: cores = "auto", this host's
    tvm_target = {**board.tvm_cpu, "num-cores": threads}
    return LowerTarget(board.name, board.kernel_family, tvm_target, threads, board)
