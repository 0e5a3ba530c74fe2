"""ONNX export of float and ternary students: onnxruntime matches torch, ternary weights are int8,
and TVM's ONNX importer feeds the same ternary rewrite as torch.export does."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_fixtures import make_tiny_clip

from edgeclip.export.onnx_export import export_onnx
from edgeclip.lower.importer import import_onnx
from edgeclip.lower.rewrite import rewrite_ternary
from edgeclip.lower.target import resolve_target
from edgeclip.models.families import model_towers
from edgeclip.models.preprocess import preprocess_image
from edgeclip.models.tokenizer import ClipTokenizer
from edgeclip.quant import TernaryConfig, freeze, quantize, ternary_layers
from edgeclip.training.data import load_fashion_mnist

INT8 = onnx.TensorProto.INT8


@pytest.fixture(scope="module")
def models():
    ternary = make_tiny_clip(seed=5)
    quantize(ternary, TernaryConfig(policy="q-all"))
    freeze(ternary)
    return {"float": make_tiny_clip(seed=5), "ternary": ternary.eval()}


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {kind: {p.stem: p for p in export_onnx(model, root / kind)} for kind, model in models.items()}


def real_inputs(model):
    images = load_fashion_mnist("test").images[:4]
    size = model.config.vision_config.image_size
    pixels = torch.stack([preprocess_image(image, size) for image in images]).numpy()
    ids = ClipTokenizer()(["a photo of a sneaker", "a dress on a hanger", "an ankle boot", "a bag"]).numpy()
    return {"image": (pixels,), "text": (ids, (ids != 0).astype(np.int64))}


@pytest.mark.parametrize("kind", ["float", "ternary"])
def test_onnxruntime_matches_torch(models, exported, kind):
    model = models[kind]
    towers = model_towers(model)
    for name, batches in real_inputs(model).items():
        session = ort.InferenceSession(str(exported[kind][name]), providers=["CPUExecutionProvider"])
        names = [spec.name for spec in towers[name].inputs]
        for i in range(len(batches[0])):
            sample = [b[i : i + 1] for b in batches]
            got = session.run(None, dict(zip(names, sample, strict=True)))[0]
            with torch.no_grad():
                expected = towers[name].module(*(torch.from_numpy(s) for s in sample)).numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_ternary_weights_are_int8_initializers(models, exported):
    for name, path in exported["ternary"].items():
        graph = onnx.load(str(path)).graph
        int8 = [t for t in graph.initializer if t.data_type == INT8]
        prefixes = ("vision_model.", "visual_projection") if name == "image" else ("text_model.", "text_projection")
        expected = [n for n in ternary_layers(models["ternary"]) if n.startswith(prefixes)]
        assert len(int8) == len(expected)
        assert path.stat().st_size < 0.5 * exported["float"][name].stat().st_size


def test_onnx_import_feeds_the_ternary_rewrite(models, exported):
    towers = model_towers(models["ternary"])
    mod = import_onnx(exported["ternary"]["image"], towers["image"].inputs)
    _, report = rewrite_ternary(mod, resolve_target("x86-64"), "int8")
    image_layers = [n for n in ternary_layers(models["ternary"]) if n.startswith(("vision_model.", "visual_projection"))]
    assert report.total == len(image_layers)
