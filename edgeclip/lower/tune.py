"""`edgeclip tune`: meta_schedule on a model's PrimFuncs, records kept under `schedules/<target>/`.

A tower is imported, rewritten and fused exactly as a build does (`prepare_module`), then:
  - every float PrimFunc (attention matmuls, softmax, LayerNorm, GELU, reshapes) is tuned with
    meta_schedule's generic design space and evolutionary search;
  - with `kernels=True`, every ternary kernel is tuned over its hand schedule's knobs
    (`knobs.py`: a `ScheduleFn` space, searched by replaying the function).
Tasks are tuned one after the other (progress per task), each measured before (DLight rules /
hand knobs: what a build without records runs) and after (the best record) with the same timer.
Only records that beat "before" by `KEEP_MARGIN` are stored, so records never make a build
slower; the store merges with what is there (`records.merge`). Builds then apply the records
with zero trials.

Measuring needs the machine itself: a board target whose CPU is not this host's is refused.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import s_tir
from tvm.ir.utils import derived_object
from tvm.s_tir import dlight
from tvm.s_tir import meta_schedule as ms

from edgeclip.errors import KernelError, ModelError
from edgeclip.lower import knobs, records
from edgeclip.lower.build import prepare_module
from edgeclip.lower.importer import import_tower
from edgeclip.lower.kernels import ACTS
from edgeclip.lower.measure import InProcessBuilder, InProcessRunner, time_func
from edgeclip.lower.schedule import default_rules
from edgeclip.lower.target import LowerTarget, resolve_target
from edgeclip.models.sources import select_towers

KEEP_MARGIN = 0.03  # a record must be this much faster than the untuned schedule to be kept
TRIALS_PER_BATCH = 16


@dataclass
class Task:
    """One PrimFunc to tune: the workload a record is keyed by, and how to schedule it untuned."""

    name: str
    kind: str  # "float" or "kernel"
    calls: int  # how often the model calls it (summed over towers)
    workload: tvm.IRModule
    space: object  # meta_schedule space generator
    strategy: object
    untuned: Callable[[], tvm.tirx.PrimFunc]
    tuned: Callable[[object], tvm.tirx.PrimFunc]  # best record -> scheduled PrimFunc


@dataclass
class TaskResult:
    name: str
    kind: str
    calls: int
    trials: int
    before_ms: float
    after_ms: float | None  # None: no candidate ran
    kept: bool


def require_local(target: LowerTarget) -> None:
    """Tuning times candidates here: the target's CPU must be this machine's."""
    board = target.board
    if not board.is_host_arch:
        raise KernelError(
            f"tuning measures candidates on the machine it runs on, and {board.name} is an {board.arch} board "
            f"while this host is {platform.machine()}: run `edgeclip tune --target {board.name}` on the board itself"
        )
    if len(board.variants) > 1:
        names = " or ".join(m.name for m in board.variants)
        raise KernelError(f"{board.name} is a fat target; its bundle's variants read the records of its members: "
                          f"tune one of them (--target {names})")


def _float_tasks(prepared: list[tvm.IRModule], target: LowerTarget, kernel_calls: dict[str, int]) -> list[Task]:
    """Every distinct unscheduled PrimFunc; counts the ternary kernels' call sites in `kernel_calls`."""
    tvm_target = target.tvm()
    found: list[list] = []  # [workload, name, calls]
    for mod in prepared:
        for task in ms.relax_integration.extract_tasks(mod, tvm_target):
            workload = task.dispatched[0]
            attrs = workload["main"].attrs
            if attrs and attrs.get("tirx.is_scheduled"):  # a ternary kernel: scheduled by hand
                kernel_calls[task.task_name] = kernel_calls.get(task.task_name, 0) + int(task.weight)
                continue
            same = next((f for f in found if tvm_ffi.structural_equal(f[0], workload)), None)
            if same:
                same[2] += int(task.weight)
            else:
                found.append([workload, task.task_name, int(task.weight)])

    def untuned(workload):
        with tvm_target:  # on a copy: the pass updates the module it is given in place
            return dlight.ApplyDefaultSchedule(*default_rules())(tvm.IRModule({"main": workload["main"]}))["main"]

    def tuned(workload, record):
        sch = s_tir.Schedule(workload)
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        return sch.mod["main"]

    return [Task(name, "float", calls, workload, "post-order-apply",
                 ms.search_strategy.EvolutionarySearch(population_size=128, init_min_unmeasured=32),
                 lambda w=workload: untuned(w), lambda record, w=workload: tuned(w, record))
            for workload, name, calls in found]


def _kernel_tasks(reports, target: LowerTarget, kernel_calls: dict[str, int]) -> list[Task]:
    keys = {key: None for report in reports for key in report.kernels if knobs.tunable(target, key)}
    return [kernel_task(key, target, kernel_calls.get("_".join(map(str, key)), 1)) for key in keys]


def kernel_task(key: tuple, target: LowerTarget, calls: int = 1) -> Task:
    """The knob search of one ternary kernel (`key` as the rewrite names it: ("ternary_linear",
    "int8", M, K, N, "bias" | "nobias"))."""
    return Task("_".join(map(str, key)), "kernel", calls, knobs.workload(target, key), knobs.design_space(target, key),
                ms.search_strategy.ReplayFunc(),
                lambda: knobs.scheduled_kernel(target, key),
                lambda record: knobs.scheduled_kernel(target, key, knobs.knobs_from_record(record)))


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Prints trials done and the best time so far after every measured batch."""

    def __init__(self, label: str, trials: int, say: Callable[[str], None]):
        super().__init__()
        self.label, self.trials, self.say = label, trials, say
        self.done, self.best, self.error = 0, float("inf"), ""

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        self.done += len(runner_results)
        for built, result in zip(builder_results, runner_results, strict=True):
            if result.run_secs:
                self.best = min(self.best, sum(float(s) for s in result.run_secs) / len(result.run_secs))
            self.error = built.error_msg or result.error_msg or self.error
        best = (f"{self.best * 1e3:.3f} ms" if self.best < float("inf") else
                f"no valid candidate yet (last error: {str(self.error).strip().splitlines()[-1][:200]})")
        self.say(f"{self.label}  trials {self.done}/{self.trials}, best {best}")


def register_cpu_intrinsics() -> None:
    """Make TuneContext's `import tvm.s_tir.tensor_intrin` cheap: register the x86 intrinsics only.

    Why: that package's __init__ parses every family's TVMScript intrinsics, CUDA's included,
    which took 2+ minutes on our 2-core host before the first trial; CPU tuning only needs x86's
    (the other families are never tuned here, see `require_local`). The real package directory
    stays importable, so anything that asks for another family by module still gets it.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        package = types.ModuleType(name)
        package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
        sys.modules[name] = package
    importlib.import_module(f"{name}.x86")


def _tune_one(task: Task, target: LowerTarget, trials: int, margin: float, label: str,
              say) -> tuple[TaskResult, object | None]:
    tvm_target = target.tvm()
    register_cpu_intrinsics()
    context = ms.TuneContext(mod=task.workload, target=tvm_target, space_generator=task.space,
                             search_strategy=task.strategy, task_name=task.name, num_threads=1, rand_state=0)
    database = ms.database.MemoryDatabase()
    builder = InProcessBuilder()
    callbacks = [ms.measure_callback.AddToDatabase(), ms.measure_callback.UpdateCostModel(),
                 _Progress(label, trials, say)]
    with tempfile.TemporaryDirectory() as work_dir:
        ms.tune_tasks(tasks=[context.clone()], task_weights=[1.0], work_dir=work_dir, max_trials_global=trials,
                      num_trials_per_iter=min(trials, TRIALS_PER_BATCH), builder=builder,
                      runner=InProcessRunner(builder), database=database, measure_callbacks=callbacks,
                      task_scheduler="round-robin")
    before = time_func(task.untuned(), tvm_target)
    best = database.query_tuning_record(task.workload, tvm_target, "main")
    after = time_func(task.tuned(best), tvm_target) if best is not None else None
    kept = after is not None and after < before * (1 - margin)
    result = TaskResult(task.name, task.kind, task.calls, len(database.get_all_tuning_records()), before * 1e3,
                        None if after is None else after * 1e3, kept)
    return result, best if kept else None


def tune(model_or_ckpt, target: str, towers=None, kernels: bool = False, trials: int = 16, act: str = "int8",
         threads: int | None = None, seq_len: int | None = None, root=None, only: list[str] | None = None,
         keep_margin: float = KEEP_MARGIN, say: Callable[[str], None] = print) -> list[TaskResult]:
    """Tune the towers of a model for `target` (this host) and merge the winning records into
    `schedules/<target>/` (or `root/<target>/`). `only`: tune just the tasks whose name contains
    one of these strings. A record is kept when it beats the untuned schedule by `keep_margin`
    (float("-inf") keeps every task's best record: for tests of the record plumbing).
    Returns one result per task."""
    if act not in ACTS:
        raise ModelError(f"--act must be one of {ACTS}, got {act!r}")
    if trials < 1:
        raise ModelError(f"--trials must be at least 1, got {trials}")
    resolved = resolve_target(target, threads)
    require_local(resolved)
    _, selected = select_towers(model_or_ckpt, towers, seq_len)
    wanted = list(selected)
    prepared, reports = [], []
    for tower in selected.values():
        mod, report = prepare_module(import_tower(tower), resolved, act)
        prepared.append(mod)
        reports.append(report)
    kernel_calls: dict[str, int] = {}
    tasks = _float_tasks(prepared, resolved, kernel_calls)
    tasks += _kernel_tasks(reports, resolved, kernel_calls) if kernels else []
    if only:
        tasks = [t for t in tasks if any(part in t.name for part in only)]
    if not tasks:
        raise ModelError(f"no task of {', '.join(wanted)} matches {only}; run without --tasks to list them")
    say(f"tuning {len(tasks)} tasks of {', '.join(wanted)} for {resolved.name} "
        f"({resolved.family}, {resolved.threads} thread{'s' * (resolved.threads > 1)}), {trials} trials each")
    return tune_tasks(tasks, resolved, trials, root, keep_margin, say)


def tune_tasks(tasks: list[Task], target: LowerTarget, trials: int, root=None, keep_margin: float = KEEP_MARGIN,
               say: Callable[[str], None] = print) -> list[TaskResult]:
    """Tune `tasks` one after the other; each kept record is merged into the target's store at
    once, so an interrupted run keeps what it found."""
    results = []
    start = time.perf_counter()
    for i, task in enumerate(tasks, 1):
        result, record = _tune_one(task, target, trials, keep_margin, f"[{i}/{len(tasks)}] {task.name}", say)
        results.append(result)
        saved = f", record saved to {records.merge([record], target.name, root)}" if record is not None else ""
        say(f"[{i}/{len(tasks)}] {task.name}: {_change(result)}{saved} ({time.perf_counter() - start:.0f} s so far)")
    return results


def _change(r: TaskResult) -> str:
    if r.after_ms is None:
        return f"untuned {r.before_ms * 1e3:.1f} us, no candidate ran"
    verdict = "kept" if r.kept else "not kept (not faster)"
    return f"untuned {r.before_ms * 1e3:.1f} us -> tuned {r.after_ms * 1e3:.1f} us, {verdict}"


def summary_table(results: list[TaskResult]) -> str:
    """Markdown: per task, untuned vs tuned latency; the last row weighs each task by its calls."""
    lines = ["| task | kind | calls | trials | untuned µs | tuned µs | speedup | kept |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        after = "-" if r.after_ms is None else f"{r.after_ms * 1e3:.1f}"
        speedup = "-" if r.after_ms is None else f"{r.before_ms / r.after_ms:.2f}"
        lines.append(f"| {r.name} | {r.kind} | {r.calls} | {r.trials} | {r.before_ms * 1e3:.1f} | {after} | {speedup} | "
                     f"{'yes' if r.kept else 'no'} |")
    before = sum(r.before_ms * r.calls for r in results)
    after = sum((r.after_ms if r.kept else r.before_ms) * r.calls for r in results)
    lines.append(f"| **all tasks x calls** | | | | {before * 1e3:.1f} | {after * 1e3:.1f} | {before / after:.2f} | |")
    return "\n".join(lines)
