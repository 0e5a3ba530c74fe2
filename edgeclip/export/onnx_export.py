"""ONNX export of a model's towers, float or ternary, for any ONNX runtime.

A frozen ternary layer computes `trits.float() * scale`, so the exported graph stores its weight
as an int8 initializer followed by Cast + Mul (a dequantize step every runtime understands);
the file is ~4x smaller than fp32 and runs unchanged in onnxruntime. Tower definitions (inputs,
static shapes) are the ones the TVM lowering uses, so both paths see the same graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

OPSET = 17


def export_tower_onnx(tower, path) -> Path:
    """Write one tower (`edgeclip.models.towers.Tower`) as an ONNX file with static shapes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    examples = tuple(spec.example() for spec in tower.inputs)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(tower.module, examples, str(path), input_names=[s.name for s in tower.inputs],
                          output_names=["embedding"], opset_version=OPSET, dynamo=False,
                          do_constant_folding=False)  # folding would store the dequantized fp32 weight
    return path


def export_onnx(model_or_ckpt, out_dir, towers=None, seq_len: int | None = None) -> list[Path]:
    """One `<tower>.onnx` per tower of a module, checkpoint directory or teacher spec."""
    from edgeclip.models.sources import select_towers

    _, selected = select_towers(model_or_ckpt, towers, seq_len)
    return [export_tower_onnx(tower, Path(out_dir) / f"{name}.onnx") for name, tower in selected.items()]
