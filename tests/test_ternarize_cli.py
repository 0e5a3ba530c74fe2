"""The foundation's end-to-end contract: `ternarize` + `inspect` on real model directories, and a
checkpoint that rebuilds a model with bit-identical outputs."""

import json

import pytest
import torch
from model_fixtures import make_tiny_clip_dir

from edgeclip.cli import main
from edgeclip.models.minilm import load_minilm
from edgeclip.models.model_io import load_model, save_model
from edgeclip.models.sources import load_source
from edgeclip.quant import TernaryConfig, quantize


def _run_json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    return make_tiny_clip_dir(tmp_path_factory.mktemp("tiny") / "clip")


def _clip_inputs():
    generator = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, 49408, (2, 12), generator=generator),
        "pixel_values": torch.randn(2, 3, 32, 32, generator=generator),
    }


def test_tiny_clip_ternarize_and_inspect(tiny_clip_dir, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["ternarize", "--model", str(tiny_clip_dir), "--policy", "q-all", "--out", str(out)]) == 0
    assert "ternarized" in capsys.readouterr().out
    stats = _run_json(capsys, ["inspect", str(out), "--json"])
    for key in ("ternary_fraction_linear", "ternary_fraction_all", "sparsity", "bits_per_weight", "compression_vs_fp32"):
        assert key in stats
    assert stats["ternary_fraction_linear"] >= 0.95
    assert stats["family"] == "hf-clip"
    assert 0.2 < stats["sparsity"] < 0.7


def test_minilm_ternarize_and_inspect(tmp_path, capsys):
    out = tmp_path / "minilm-q-all"
    assert main(["ternarize", "--model", "minilm", "--policy", "q-all", "--out", str(out)]) == 0
    capsys.readouterr()
    stats = _run_json(capsys, ["inspect", str(out), "--json"])
    assert stats["ternary_fraction_linear"] >= 0.95
    assert stats["family"] == "minilm"
    # 22.7M parameters, nearly all ternary: the packed checkpoint is well over 10x smaller.
    assert stats["compression_on_disk_vs_fp32"] > 10


def test_q_ffn_leaves_attention_float(tiny_clip_dir, tmp_path, capsys):
    out = tmp_path / "q-ffn"
    assert main(["ternarize", "--model", str(tiny_clip_dir), "--policy", "q-ffn", "--out", str(out)]) == 0
    capsys.readouterr()
    stats = _run_json(capsys, ["inspect", str(out), "--json"])
    assert 0.3 < stats["ternary_fraction_linear"] < 0.8


@pytest.mark.parametrize("granularity", ["channel", "tensor", ("group", 32)])
def test_checkpoint_rebuilds_bit_identical_clip(tiny_clip_dir, tmp_path, granularity):
    model, family, arch = load_source(str(tiny_clip_dir))
    config = TernaryConfig(granularity=granularity)
    quantize(model, config)
    inputs = _clip_inputs()
    with torch.no_grad():
        expected = model(**inputs)
    save_model(model, tmp_path / "ckpt", family, arch, config)
    rebuilt, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        got = rebuilt(**inputs)
    assert torch.equal(expected.image_embeds, got.image_embeds)
    assert torch.equal(expected.text_embeds, got.text_embeds)
    assert torch.equal(expected.logits_per_image, got.logits_per_image)


@pytest.mark.parametrize("learn_scales", [False, True])
def test_checkpoint_rebuilds_bit_identical_minilm(tmp_path, learn_scales):
    """With learned scales the checkpoint holds the trained scales, not beta * mean|W|."""
    model, family, arch = load_source("minilm")
    config = TernaryConfig(learn_scales=learn_scales)
    quantize(model, config)
    if learn_scales:
        with torch.no_grad():
            for parameter in (p for n, p in model.named_parameters() if n.endswith("learned_scales")):
                parameter.mul_(torch.linspace(0.8, 1.2, parameter.numel()))
    _, tokenizer = load_minilm()
    batch = tokenizer(["a ternary sentence encoder", "edge devices run it fast"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch)
    save_model(model, tmp_path / "ckpt", family, arch, config)
    rebuilt, _ = load_model(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(expected, rebuilt(**batch))


def test_errors_are_one_line_with_a_fix(tmp_path, capsys):
    assert main(["ternarize", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgeclip ternarize: error:") and "does not exist" in err
    assert "Traceback" not in err
    assert main(["inspect", str(tmp_path / "missing")]) == 1
    assert "edgeclip inspect: error:" in capsys.readouterr().err


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("ternarize", "inspect", "demo"):
        assert verb in out
