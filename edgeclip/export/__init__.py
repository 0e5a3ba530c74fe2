"""Export to other runtimes: ONNX (see docs/lowering.md). Checkpoints are `edgeclip.models.checkpoint`."""
