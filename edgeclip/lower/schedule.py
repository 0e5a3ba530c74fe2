"""Schedules for everything the ternary rewrite leaves in float: attention matmuls, softmax,
LayerNorm, GELU, residual adds, reshapes and transposes.

Unscheduled TIR runs as scalar loop nests (a probe measured an encoder block 10x slower than
torch). DLight's CPU rules cover row reductions (softmax, LayerNorm) and GEMV; TVM 0.27 ships no
CPU rule for batched matmuls or injective ops, so `CpuLoopNest` supplies one: inline producers,
put the output's contiguous axis innermost (LLVM vectorizes it), and spread the outer loops over
threads when the target has several cores. The ternary kernels arrive already scheduled
(`tirx.is_scheduled`) and are left alone.

On a CUDA target DLight's GPU rules take the whole remainder: Matmul (attention's batched
matmuls), GEMV, Reduction and GeneralReduction (softmax, LayerNorm), and Fallback, which binds
every other (injective) block to blocks x threads; an op none of them takes fails the build.

Tuning records (`edgeclip tune`, `records.py`) come first: a PrimFunc with a record of the
build's target gets the recorded schedule (tagged `edgeclip.schedule = "record"`), every other
one falls through to the rules above. Applying a record replays its trace: zero trials.
"""

from __future__ import annotations

import tvm
from tvm import relax, s_tir, tirx
from tvm.s_tir import dlight
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base.common_schedules import try_inline
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

# float32 lanes of one vector register: 128-bit NEON on aarch64, AVX2 elsewhere (x86-64; LLVM
# widens further on AVX-512 targets). Whole vectors only, so the lane count gates vectorizing.
VECTOR_LANES = {"aarch64": 4}
DEFAULT_VECTOR_LANES = 8
PARALLEL_MIN_ELEMENTS = 4096  # below this, waking the thread pool costs more than it saves


def _threads(target) -> int:
    return int(target.attrs.get("num-cores", 1) or 1)


def _vector_lanes(target) -> int:
    arch = str(target.attrs.get("mtriple", "")).split("-", 1)[0]
    return VECTOR_LANES.get(arch, DEFAULT_VECTOR_LANES)


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


class CpuLoopNest(CPUScheduleRule):
    """Injective blocks: one flat vectorized loop. Reductions (batched matmul): [spatial...,
    reduction..., last spatial] so the inner loop streams contiguous rows of both operands."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if blocks is None:
            return None
        threads = _threads(target)
        for block in try_inline(sch, blocks):
            if block.is_injective():
                self._injective(sch, block.block_rv, threads, _vector_lanes(target))
            elif block.is_reduction():
                self._reduction(sch, block.block_rv, block.dom_kind(), threads)
            else:
                return None
        return sch

    @staticmethod
    def _injective(sch, block, threads, lanes):
        """Vectorize the innermost loop only when whole vectors fit: fusing every loop first would
        turn transposes into per-lane div/mod gathers (measured 10x slower than nested loops)."""
        loops = sch.get_loops(block)
        if not loops:
            return
        total = 1
        for loop in loops:
            total *= _extent(sch, loop) or 1
        inner = _extent(sch, loops[-1])
        if inner is not None and inner % lanes == 0:
            sch.vectorize(sch.split(loops[-1], [None, lanes])[1])
        if threads > 1 and total >= PARALLEL_MIN_ELEMENTS and len(loops) > 1:
            sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])

    @staticmethod
    def _reduction(sch, block, dom_kind, threads):
        loops = sch.get_loops(block)
        spatial = [loop for loop, kind in zip(loops, dom_kind, strict=True) if kind == "S"]
        reduce = [loop for loop, kind in zip(loops, dom_kind, strict=True) if kind == "R"]
        if not spatial or not reduce:
            return
        inner = spatial[-1]
        sch.reorder(*spatial[:-1], *reduce, inner)
        if len(spatial) > 1 and threads > 1:
            sch.parallel(sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0])
        sch.decompose_reduction(block, reduce[0])


def default_rules(target=None):
    """The rules for `target`'s kind: DLight's GPU rules for CUDA, the CPU rules otherwise."""
    if target is not None and target.kind.name == "cuda":
        gpu = dlight.gpu
        return (gpu.Matmul(), gpu.GEMV(), gpu.Reduction(), gpu.GeneralReduction(), gpu.Fallback())
    return (dlight.cpu.Reduction(), dlight.cpu.GEMV(), CpuLoopNest())


RECORD_ATTR = "edgeclip.schedule"  # "record" on PrimFuncs scheduled from a tuning record


def _scheduled(func) -> bool:
    return isinstance(func, tirx.PrimFunc) and bool(func.attrs and func.attrs.get("tirx.is_scheduled"))


def apply_records(mod: tvm.IRModule, records) -> tvm.IRModule:
    """Schedule every PrimFunc that has a record in `records` (inside `with target:`)."""
    before = {gv.name_hint for gv, f in mod.functions_items() if _scheduled(f)}
    with records:
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    for gv, func in mod.functions_items():
        if _scheduled(func) and gv.name_hint not in before:
            mod[gv] = func.with_attr(RECORD_ATTR, "record")
    return mod


def schedule_graph(mod: tvm.IRModule, target, records=None) -> tvm.IRModule:
    """Apply tuning records (a meta_schedule database, if any), then the target's rules to every
    PrimFunc still unscheduled."""
    with target:
        if records is not None:
            mod = apply_records(mod, records)
        return dlight.ApplyDefaultSchedule(*default_rules(target))(mod)


def unscheduled(mod: tvm.IRModule) -> list[str]:
    """Names of PrimFuncs no rule scheduled (they still run, as plain loop nests)."""
    return [gv.name_hint for gv, f in mod.functions_items()
            if isinstance(f, tirx.PrimFunc) and not (f.attrs and f.attrs.get("tirx.is_scheduled"))]
