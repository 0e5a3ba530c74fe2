"""Where a compiled tower spends its time: wall time per called function, from the VM's
instrumentation hook (works for every target the host can run, no profiler build needed)."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import tvm
from tvm import relax


def profile_tower(tower, arrays, repeat: int = 3) -> list[dict]:
    """[{"op", "calls", "ms"}] per function symbol, slowest first; ms is per run (mean of `repeat`)."""
    vm = relax.VirtualMachine(tower.executable, tvm.cpu())
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    started: list[float] = []

    def instrument(func, symbol, before_run, ret_value, *args):
        if before_run:
            started.append(time.perf_counter())
        else:
            totals[str(symbol)] += time.perf_counter() - started.pop()
            counts[str(symbol)] += 1
        return 0

    vm.set_instrument(tvm.runtime.convert(instrument))
    inputs = [tvm.runtime.tensor(np.ascontiguousarray(a, dtype=s.dtype)) for a, s in zip(arrays, tower.inputs, strict=True)]
    inputs += [tvm.runtime.tensor(w) for w in tower.weights]  # packed ternary weights follow the inputs
    vm["main"](*inputs)  # warm-up (allocator, caches)
    totals.clear()
    counts.clear()
    for _ in range(repeat):
        vm["main"](*inputs)
    rows = [{"op": op, "calls": counts[op] // repeat, "ms": 1000 * total / repeat} for op, total in totals.items()]
    return sorted(rows, key=lambda row: -row["ms"])
