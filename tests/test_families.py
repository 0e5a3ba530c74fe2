"""Model families are data: every module in edgeclip/models/families/ describes one, and every
verb asks the descriptor. These tests hold each descriptor to the contract the verbs rely on."""

import pkgutil

import numpy as np
import pytest
import torch
from model_fixtures import make_tiny_clip
from PIL import Image

from edgeclip.errors import ModelError
from edgeclip.models import families
from edgeclip.models.families import all_families, family, family_of, model_towers
from edgeclip.models.families.base import KINDS


def _example(name: str):
    """A small real model of each family (random weights; MiniLM's real ones)."""
    if name == "hf-clip":
        return make_tiny_clip(seed=1)
    if name == "demo-clip":
        from edgeclip.models.demo import new_demo_clip

        return new_demo_clip(seed=1)
    if name == "hf-vision":
        from transformers import ViTConfig

        from edgeclip.models.image_encoder import build_image_encoder

        return build_image_encoder(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, image_size=32, patch_size=8).to_dict())
    from edgeclip.models.sources import load_source

    return load_source("minilm")[0]


def test_every_family_module_is_found_and_names_are_unique():
    modules = {m.name for m in pkgutil.iter_modules(families.__path__)} - {"base"}
    assert len(all_families()) == len(modules) >= 3
    assert set(all_families()) == {"hf-clip", "demo-clip", "minilm", "hf-vision"}
    with pytest.raises(ModelError, match="unknown model family 'resnet'.*hf-clip"):
        family("resnet")


@pytest.mark.parametrize("name", sorted(all_families()))
def test_a_family_rebuilds_recognises_and_towers_its_models(name):
    described = family(name)
    assert described.kind in KINDS and described.default_data
    model = _example(name)
    assert family_of(model) is described
    rebuilt = described.build(described.arch(model))
    assert family_of(rebuilt) is described
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    towers = model_towers(model)
    assert set(towers) == {"clip": {"image", "text"}, "image-embedder": {"image"}}.get(described.kind, {"text"})
    with torch.no_grad():
        for tower in towers.values():
            out = tower.module(*(spec.example() for spec in tower.inputs))
            assert out.shape[0] == 1 and torch.isfinite(out).all()
    if described.bundled:  # a bundle feeds every tower its family has
        assert (described.image is not None) == ("image" in towers) and (described.text is not None) == ("text" in towers)


@pytest.mark.parametrize("name", [n for n, f in sorted(all_families().items()) if f.image is not None])
def test_a_familys_image_input_fits_its_image_tower(name):
    described, model = family(name), _example(name)
    preprocessing = described.image.preprocessing(described.arch(model))
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8))
    pixels = described.image.pixels(picture, preprocessing)
    (spec,) = model_towers(model)["image"].inputs
    assert pixels.shape == spec.shape and pixels.dtype == np.float32


def test_an_unknown_model_is_named():
    with pytest.raises(ModelError, match="Linear is not a model edgeclip knows"):
        family_of(torch.nn.Linear(2, 2))


def test_the_documented_new_family_is_one_module(tmp_path, monkeypatch):
    """docs/architecture.md's example, dropped in as a module of the families folder, is a family."""
    import re
    from pathlib import Path

    from edgeclip.models.sources import load_source

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    (code,) = re.findall(r"```python\n# edgeclip/models/families/cls_encoder.py\n(.*?)```", doc, re.S)
    (tmp_path / "cls_encoder.py").write_text(code)
    monkeypatch.setattr(families, "__path__", [*families.__path__, str(tmp_path)])
    all_families.cache_clear()
    try:
        described = family("cls-encoder")
        bert = load_source("minilm")[0].bert
        model = described.build(bert.config.to_dict())
        assert family_of(model) is described
        (tower,) = model_towers(model).values()
        with torch.no_grad():
            assert tower.module(*(spec.example() for spec in tower.inputs)).shape == (1, bert.config.hidden_size)
    finally:
        all_families.cache_clear()
