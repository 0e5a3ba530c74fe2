"""Image embedders as bundles: a local Hugging Face ViTModel and CLIPVisionModel directory (small,
random weights, saved with save_pretrained: no hub) ternarized and built for this host. The
runner's `embed --image DIR` (its own decoding and preprocessing) agrees with the PyTorch student
on the host's preprocessing; the bundle carries no text tower or tokenizer."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

from edgeclip.bundle.build import build_bundle
from edgeclip.bundle.model_info import manifest_family, read_image
from edgeclip.cli import main
from edgeclip.formats.bundle import variant_towers, verify_bundle
from edgeclip.models.model_io import load_model

skimage = pytest.importorskip("skimage")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(platform.machine() != "x86_64", reason="the bundles are built for x86-64 hosts")]
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
         "image_size": 32, "patch_size": 8}
BACKBONES = {"vit": (ViTModel, ViTConfig), "clip-vision": (CLIPVisionModel, CLIPVisionConfig)}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def embedder(request, tmp_path_factory):
    """(the ternary checkpoint, its x86-64 bundle) of one backbone."""
    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp(request.param)
    model_class, config_class = BACKBONES[request.param]
    torch.manual_seed(0)
    model_class(config_class(**SIZES)).save_pretrained(root / "teacher")
    _, checkpoint = ternarize_source(str(root / "teacher"), TernaryConfig(policy="q-all"), root / request.param)
    return checkpoint, build_bundle(checkpoint, "x86-64-v3", root / "out", batches=(1,))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(Path(skimage.__file__).parent / "data" / name, folder / name)
    return folder


def test_embed_a_folder_matches_the_pytorch_student(embedder, photos, tmp_path):
    checkpoint, bundle = embedder
    out = tmp_path / "embeddings.npy"
    assert main(["embed", str(bundle), "--image", str(photos), "--out", str(out)]) == 0
    got = np.load(out)
    manifest = verify_bundle(bundle)
    found, (model, _) = manifest_family(manifest), load_model(checkpoint)
    with torch.no_grad():
        expected = torch.cat([model(torch.from_numpy(found.image.pixels(read_image(path), manifest["preprocessing"])))
                              for path in sorted(photos.iterdir())]).numpy()
    assert got.shape == expected.shape == (len(PHOTOS), SIZES["hidden_size"])
    worst = float((got * expected).sum(axis=1).min())
    assert worst >= 0.99, f"worst cosine {worst:.4f}"


def test_an_image_embedding_bundle_is_image_only(embedder):
    manifest = verify_bundle(embedder[1])
    assert manifest["model"]["family"] == "hf-vision" and list(variant_towers(manifest)["ternary"]) == ["image"]
    assert "tokenizer" not in manifest and not [m for m in manifest["members"] if "text" in m or "tokenizer" in m]


def test_training_an_image_embedder_is_refused_in_one_line(tmp_path, capsys):
    ViTModel(ViTConfig(**SIZES)).save_pretrained(tmp_path / "vit")
    assert main(["train", "--teacher", str(tmp_path / "vit"), "--steps", "1", "--out", str(tmp_path / "out")]) != 0
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' own progress lines
    assert error.startswith("edgeclip train: error: hf-vision models (image-embedder) cannot be trained yet")
