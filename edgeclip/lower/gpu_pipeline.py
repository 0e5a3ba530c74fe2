"""The Relax pipeline `tvm.compile` runs for a CUDA tower: TVM's CUDA pipeline without its
legalize/fuse/schedule passes, which `lower_module` has already run.

Why: re-running FuseOps + FuseTIR on a module that already holds fused, scheduled PrimFuncs
fuses the CUDA ternary kernel's output with its consumer a second time and FuseTIR fails
("Inconsistent buffers ... mapped to the same relax var"). The CPU path keeps TVM's default
pipeline (no change there).
"""

from __future__ import annotations

import tvm
from tvm.relax.backend.cuda import pipeline as cuda


def gpu_pipeline(target: tvm.target.Target) -> tvm.transform.Pass:
    """Library dispatch, dataflow lowering and finalisation (memory planning, CUDA graphs, VM)."""

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(
                cuda.library_dispatch_passes(target) + cuda.dataflow_lower_passes(target)
                + cuda.finalize_passes(target)
            )(mod)

    return _pipeline
