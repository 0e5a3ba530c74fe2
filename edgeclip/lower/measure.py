"""Build and time candidate PrimFuncs in this process, for meta_schedule and for before/after.

Why not meta_schedule's LocalBuilder/LocalRunner: their worker processes import TVM's tensor
intrinsic package (ARM SME included, tens of seconds) before the first build, and on a small
shared host that alone overruns their 30 s build timeout, so every trial fails. Building with
`tvm.compile` here costs only the LLVM codegen. Integer arguments are zeros, not random: some
float-remainder functions gather with them (`take`), and an index out of range would crash.
"""

from __future__ import annotations

import itertools

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

MIN_REPEAT_MS = 20  # each repeat loops the call for at least this long
REPEATS = 3


def random_args(shapes_dtypes) -> list:
    rng = np.random.default_rng(0)
    args = []
    for shape, dtype in shapes_dtypes:
        if dtype.startswith("float"):
            args.append(tvm.runtime.tensor(rng.standard_normal(shape).astype(dtype)))
        else:
            args.append(tvm.runtime.tensor(np.zeros(shape, dtype)))
    return args


def time_module(lib, shapes_dtypes) -> list[float]:
    """Seconds per call of `lib["main"]`, one figure per repeat."""
    args = random_args(shapes_dtypes)
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=REPEATS, min_repeat_ms=MIN_REPEAT_MS)
    return [float(t) for t in timer(*args).results]


def func_args(func: tvm.tirx.PrimFunc) -> list[tuple[tuple[int, ...], str]]:
    return [(tuple(int(d) for d in buf.shape), str(buf.dtype)) for buf in func.params]  # params are Buffers


def time_func(func: tvm.tirx.PrimFunc, target) -> float:
    """Median seconds per call of a scheduled PrimFunc built for `target` (this host)."""
    lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
    return float(np.median(time_module(lib, func_args(func))))


@derived_object
class InProcessBuilder(ms.builder.PyBuilder):
    """Compiles candidates with `tvm.compile`; the artifact "path" is a key into `built`."""

    def __init__(self):
        super().__init__()
        self.built: dict[str, object] = {}
        self._ids = itertools.count()

    def build(self, build_inputs):
        results = []
        for item in build_inputs:
            try:
                key = f"in-process:{next(self._ids)}"
                self.built[key] = tvm.compile(item.mod, target=item.target)
                results.append(ms.builder.BuilderResult(key, None))
            except Exception as err:  # noqa: BLE001 - a bad candidate is a failed trial, not a crash
                results.append(ms.builder.BuilderResult(None, f"{type(err).__name__}: {err}"))
        return results


@derived_object
class _Done(ms.runner.PyRunnerFuture):
    def __init__(self, result):
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self):
        return self._result


@derived_object
class InProcessRunner(ms.runner.PyRunner):
    """Times what `builder` built, one candidate at a time (the host has few cores)."""

    def __init__(self, builder: InProcessBuilder):
        super().__init__()
        self.builder = builder

    def run(self, runner_inputs):
        futures = []
        for item in runner_inputs:
            lib = self.builder.built.pop(item.artifact_path)
            shapes = [(tuple(int(d) for d in info.shape), str(info.dtype)) for info in item.args_info]
            try:
                futures.append(_Done(ms.runner.RunnerResult(time_module(lib, shapes), None)))
            except Exception as err:  # noqa: BLE001 - reported as a failed trial
                futures.append(_Done(ms.runner.RunnerResult(None, f"{type(err).__name__}: {err}")))
        return futures
