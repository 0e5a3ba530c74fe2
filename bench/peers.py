"""The runtimes a user would pick instead of edgeclip, each ready to time on one tower and input.

Every peer gets the same fp32 tower (its ONNX export for the ONNX-based ones) and the same feeds:
  torch fp32 / torch int8 dynamic          eager PyTorch, dynamic-int8 linears
  onnxruntime fp32 / int8 static QDQ       QDQ int8, per-channel weights, calibrated on CALIB inputs
  openvino default / f32                   the CPU plugin's default precision (it picks bf16 on
                                           CPUs with AVX512_BF16 or AMX), then explicitly f32
  openvino int8 (nncf)                     NNCF post-training quantisation of the same model
Each row says the precision it ran at (`precision`), read back from the compiled model where the
runtime can say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

CALIB = 8  # calibration inputs for the static int8 peers


@dataclass
class Peer:
    label: str
    run: Callable[[], np.ndarray]  # one call; returns the tower's output
    extra: dict = field(default_factory=dict)


def calibration_feeds(tower, feeds: dict, count: int = CALIB) -> list[dict]:
    """`count` inputs like `feeds`: images are fresh normal pixels, token inputs are kept (the
    activations' range is what calibration needs, and it depends on the pixels, not the ids)."""
    rng = np.random.default_rng(1)
    return [{name: (rng.standard_normal(a.shape).astype(a.dtype) if a.dtype == np.float32 else a)
             for name, a in feeds.items()} for _ in range(count)]


def torch_peers(tower, args: list[torch.Tensor]) -> list[Peer]:
    dyn_int8 = torch.ao.quantization.quantize_dynamic(tower.module, {torch.nn.Linear}, dtype=torch.qint8)

    def eager(module):
        def run():
            with torch.no_grad():
                return module(*args).numpy()
        return run

    return [Peer("torch fp32", eager(tower.module), {"precision": "f32"}),
            Peer("torch int8 dynamic", eager(dyn_int8), {"precision": "int8 linears, f32 rest"})]


def onnxruntime_peers(onnx_fp: Path, feeds: dict, calib: list[dict], threads: int, workdir: Path) -> list[Peer]:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(calib)

        def get_next(self):
            return next(self.rows, None)

    onnx_q, onnx_dyn = workdir / f"{onnx_fp.stem}-qdq.onnx", workdir / f"{onnx_fp.stem}-dynamic.onnx"
    if not onnx_q.exists():
        quantize_static(str(onnx_fp), str(onnx_q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    if not onnx_dyn.exists():  # what BERT-family users usually ship: int8 weights, activations quantized per call
        quantize_dynamic(str(onnx_fp), str(onnx_dyn), per_channel=True, weight_type=QuantType.QInt8)
    peers = []
    for label, path, precision in (("onnxruntime fp32", onnx_fp, "f32"),
                                   ("onnxruntime int8 static QDQ", onnx_q, "int8 QDQ, per-channel s8s8"),
                                   ("onnxruntime int8 dynamic", onnx_dyn, "int8 weights per-channel, dynamic u8 acts")):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        peers.append(Peer(label, lambda s=session: s.run(None, feeds)[0],
                          {"precision": precision, "weights_mb": round(path.stat().st_size / 2**20, 1)}))
    return peers


def openvino_peers(onnx_fp: Path, feeds: dict, calib: list[dict], threads: int) -> list[Peer]:
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_fp))
    base = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    quantized = nncf.quantize(core.read_model(str(onnx_fp)), nncf.Dataset(calib), subset_size=len(calib),
                              model_type=nncf.ModelType.TRANSFORMER)
    peers = []
    for label, graph, config in (("openvino default", model, base),
                                 ("openvino f32", model, {**base, "INFERENCE_PRECISION_HINT": "f32"}),
                                 ("openvino int8 (nncf)", quantized, base)):
        compiled = core.compile_model(graph, "CPU", config)
        request = compiled.create_infer_request()
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        peers.append(Peer(label, lambda r=request: r.infer(feeds)[0],
                          {"precision": ("int8 + " if graph is quantized else "") + precision}))
    return peers
