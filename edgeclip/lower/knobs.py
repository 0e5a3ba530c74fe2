"""The ternary kernels' hand-schedule knobs as a meta_schedule design space, and back.

Tunable families (`FAMILY.tunable`: the x86 ones, whose `FAMILY.micro_kernel` is an
`x86.BlockKernel`): the register blocking of the int8 linear (`rows` x `vecs` accumulators over
chunks of `kgroups`, see `edgeclip.schedules.x86`) is the part of the hand schedule worth
searching; the rest of its loop nest is fixed by the micro-kernel. The design space samples each
knob with `sample_categorical` among the values `x86.knob_choices` proves correct, then applies
the hand schedule with them, so a tuning record's trace holds the chosen knobs as its decisions.
A build reads those decisions back (`knobs_from_record`) and schedules the kernel with them; it
never replays the trace, so a record can only ever select among correct schedules.

The other families have no knob here (and tuning for a board needs the board, see `tune.py`).
"""

from __future__ import annotations

import re
from dataclasses import replace

import tvm
from tvm.s_tir import meta_schedule as ms

from edgeclip.errors import KernelError
from edgeclip.lower import kernels
from edgeclip.lower.schedule import RECORD_ATTR
from edgeclip.lower.target import LowerTarget
from edgeclip.schedules import x86
from edgeclip.schedules.family import FAMILIES, KernelFamily, load_family
from edgeclip.schedules.ternary import LinearShape, LinearSpec, linear_prim_func

KNOB_ORDER = ("rows", "vecs", "kgroups")  # the order the space samples them in (vecs' values depend on rows)


def tunable(target: LowerTarget, key: tuple) -> bool:
    """Whether a rewrite kernel key names a kernel with knobs: an int8 linear of a tunable family."""
    return key[0] == "ternary_linear" and key[1] == "int8" and kernels.family(target).FAMILY.tunable


def _family(target: LowerTarget) -> KernelFamily:
    family = kernels.family(target).FAMILY
    if not family.tunable:
        raise KernelError(f"the {family.name} kernels of {target.name} have no knobs to tune; "
                          "tune the float remainder only (no --kernels)")
    return family


def _kernel(target: LowerTarget) -> x86.BlockKernel:
    return _family(target).micro_kernel


def spec_for(target: LowerTarget, key: tuple) -> LinearSpec:
    """The computation a rewrite kernel key stands for, as the family pads it."""
    _, _, m, k, n, bias = key
    return x86.linear_spec(_family(target), LinearShape(m, k, n, "channel", "int8", bias == "bias"))


def workload(target: LowerTarget, key: tuple) -> tvm.IRModule:
    """The unscheduled kernel: what a record is keyed by (structurally, as meta_schedule does)."""
    return tvm.IRModule({"main": linear_prim_func(spec_for(target, key))})


def design_space(target: LowerTarget, key: tuple) -> ms.space_generator.ScheduleFn:
    """A meta_schedule space over the correct knob values of one kernel (no generic rules)."""
    spec, kernel = spec_for(target, key), _kernel(target)
    choices = x86.knob_choices(spec, kernel)

    def sample(sch, values: list[int]) -> int:
        return int(sch.get(sch.sample_categorical(values, [1.0 / len(values)] * len(values))))

    def schedule(sch) -> None:
        rows = sample(sch, choices["rows"])
        vecs = sample(sch, [v for v in choices["vecs"] if rows * v <= kernel.rows * kernel.vecs])
        x86.apply_int8(sch, spec, kernel, target.threads, x86.Knobs(rows, vecs, sample(sch, choices["kgroups"])))

    return ms.space_generator.ScheduleFn(schedule, sch_rules=[], postprocs=[], mutator_probs={})


_BLOCK_INTRIN = re.compile(r"(edgeclip_\w+?_block)_(\d+)x(\d+)x(\d+)")


def register_intrinsics_in(text: str) -> None:
    """Register the micro-kernel intrinsics that recorded traces name: TVM parses a trace only
    when its tensorize intrinsics exist, and a fresh process has registered none of ours."""
    named = set(_BLOCK_INTRIN.findall(text))
    micro_kernels = _micro_kernels({name for name, *_ in named})
    for name, rows, vecs, kgroups in named:
        if name in micro_kernels:
            x86.block_intrin(replace(micro_kernels[name], rows=int(rows), vecs=int(vecs)), int(kgroups))


def _micro_kernels(names: set[str]) -> dict[str, x86.BlockKernel]:
    """The tunable families' micro-kernels by name, importing families only until `names` are
    all found (x86 comes first in FAMILIES, so an x86 build imports no other family)."""
    found: dict[str, x86.BlockKernel] = {}
    for family_name in FAMILIES:
        if names <= found.keys():
            break
        family = load_family(family_name).FAMILY
        if family.tunable:
            found[family.micro_kernel.name] = family.micro_kernel
    return found


def knobs_from_record(record) -> x86.Knobs:
    """The knobs a record's trace sampled, in `KNOB_ORDER`."""
    trace = record.trace
    values = [int(inst.attrs[0][int(trace.decisions[inst])]) for inst in trace.insts
              if inst.kind.name == "SampleCategorical"]
    if len(values) != len(KNOB_ORDER):
        raise KernelError(f"a kernel tuning record holds {len(values)} knob decisions, not {len(KNOB_ORDER)}; "
                          "it was not written by `edgeclip tune --kernels`: re-run the tuning")
    return x86.Knobs(*values)


def scheduled_kernel(target: LowerTarget, key: tuple, knobs: x86.Knobs | None = None) -> tvm.tirx.PrimFunc:
    """The kernel scheduled with `knobs` (None: the hand choice); raises on knobs it is not correct for."""
    func = x86.schedule_int8(spec_for(target, key), _kernel(target), target.threads, knobs)
    return func.with_attr("tirx.is_scheduled", True)


def apply_kernel_records(mod: tvm.IRModule, kernel_vars: dict, target: LowerTarget, records) -> tvm.IRModule:
    """Reschedule each tunable ternary kernel (`kernel_vars`: rewrite key -> GlobalVar) with the
    knobs of its record in `records`; kernels without a record keep the hand knobs."""
    if records is None:
        return mod
    for key, gv in kernel_vars.items():
        if not tunable(target, key):
            continue
        record = records.query_tuning_record(workload(target, key), target.tvm(), "main")
        if record is None:
            continue
        knobs = knobs_from_record(record)
        func = scheduled_kernel(target, key, knobs).with_attr("global_symbol", gv.name_hint)
        mod[gv] = func.with_attr(RECORD_ATTR, f"record rows={knobs.rows} vecs={knobs.vecs} kgroups={knobs.kgroups}")
    return mod
