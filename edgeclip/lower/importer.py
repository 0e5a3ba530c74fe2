"""A model's towers (`edgeclip.models.towers`) as Relax IRModules, through `torch.export` or from
an ONNX file."""

from __future__ import annotations

import torch

from edgeclip.models.towers import InputSpec, Tower


def export_tower(tower: Tower) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(tower.module, tuple(spec.example() for spec in tower.inputs))


def import_tower(tower: Tower):
    """torch.export the tower and translate it to a Relax IRModule (weights become constants)."""
    from tvm.relax.frontend.torch import from_exported_program

    return from_exported_program(export_tower(tower), unwrap_unit_return_tuple=True)


def import_onnx(path, inputs: tuple[InputSpec, ...]):
    """A Relax IRModule from an ONNX file, with static input shapes."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    graph = onnx.load(str(path))
    return from_onnx(graph, shape_dict={s.name: list(s.shape) for s in inputs},
                     dtype_dict={s.name: s.dtype for s in inputs}, keep_params_in_input=False)
