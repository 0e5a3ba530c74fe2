"""Model families a checkpoint can name, and the teacher specs the CLI accepts.

A family is a builder from a plain architecture dict (no weights), so a checkpoint rebuilds its
model without the teacher's files: 'hf-clip' (transformers CLIPModel), 'minilm' (BERT sentence
encoder) and 'demo-clip' (the built-in Fashion-MNIST teacher).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from edgeclip.errors import ModelError

FAMILIES = ("hf-clip", "minilm", "demo-clip")


def build_model(family: str, arch: dict) -> nn.Module:
    """An untrained model of `family` with architecture `arch`, in eval mode."""
    if family == "hf-clip":
        from transformers import CLIPConfig, CLIPModel

        return CLIPModel(CLIPConfig.from_dict(arch)).eval()
    if family == "minilm":
        from transformers import BertConfig, BertModel

        from edgeclip.models.minilm import SentenceEncoder

        return SentenceEncoder(BertModel(BertConfig.from_dict(arch))).eval()
    if family == "demo-clip":
        from edgeclip.models.demo import DemoClip

        return DemoClip.from_config(arch).eval()
    raise ModelError(f"unknown model family {family!r}; this edgeclip knows {', '.join(FAMILIES)}")


def load_source(spec: str) -> tuple[nn.Module, str, dict]:
    """(float model, family, arch) for a teacher spec: 'minilm', 'demo', or a model directory."""
    if spec == "minilm":
        from edgeclip.models.minilm import minilm_path

        return _load_minilm(minilm_path())
    if spec == "demo":
        from edgeclip.models.demo import demo_teacher_dir

        spec = str(demo_teacher_dir())
    config = _read_config(spec)
    if config.get("format") == "edgeclip-checkpoint":
        return _load_float_checkpoint(spec, config)
    if config.get("model_type") == "clip":
        from edgeclip.models.hf_clip import load_hf_clip

        model = load_hf_clip(spec)
        return model, "hf-clip", model.config.to_dict()
    if config.get("model_type") == "bert":
        return _load_minilm(Path(spec))
    raise ModelError(
        f"{spec}/config.json has model_type {config.get('model_type')!r}; edgeclip loads CLIP ('clip') "
        "and BERT-family ('bert') encoders, 'minilm', 'demo', or an edgeclip checkpoint"
    )


def open_model(model_or_spec) -> tuple[nn.Module, str]:
    """(model in eval mode, family) from a module, an edgeclip checkpoint (float or ternary) or a
    teacher spec: the one door for verbs that take any model (compile, tune, export, eval)."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec.eval(), family_of(model_or_spec)
    config_file = Path(model_or_spec) / "config.json"
    if config_file.is_file() and _read_config(str(model_or_spec)).get("format") == "edgeclip-checkpoint":
        from edgeclip.export.model_io import load_model

        model, saved = load_model(model_or_spec)
        return model.eval(), saved["family"]
    model, family, _ = load_source(str(model_or_spec))
    return model, family


def family_of(model: nn.Module) -> str:
    from transformers import CLIPModel

    from edgeclip.models.demo import DemoClip
    from edgeclip.models.minilm import SentenceEncoder

    if isinstance(model, CLIPModel):
        return "hf-clip"
    if isinstance(model, DemoClip):
        return "demo-clip"
    if isinstance(model, SentenceEncoder):
        return "minilm"
    raise ModelError(f"{type(model).__name__} is not a model edgeclip knows; pass a CLIPModel, DemoClip, "
                     "SentenceEncoder or a checkpoint")


def _load_minilm(path: Path) -> tuple[nn.Module, str, dict]:
    from edgeclip.models.minilm import SentenceEncoder, load_minilm

    bert, _ = load_minilm(path)
    return SentenceEncoder(bert).eval(), "minilm", bert.config.to_dict()


def _load_float_checkpoint(spec: str, config: dict) -> tuple[nn.Module, str, dict]:
    from edgeclip.export.model_io import load_model

    model, saved = load_model(spec)
    if saved.get("quant") is not None:
        raise ModelError(f"{spec} is already ternary; start from its float teacher instead")
    return model, saved["family"], saved["arch"]


def _read_config(spec: str) -> dict:
    path = Path(spec)
    config_file = path / "config.json"
    if not path.is_dir():
        raise ModelError(
            f"model {spec!r} does not exist; pass a local model directory, 'minilm' or 'demo' (edgeclip never downloads)"
        )
    if not config_file.is_file():
        raise ModelError(f"{spec} has no config.json; pass an HF model directory or an edgeclip checkpoint")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"{config_file} is not valid JSON ({err})") from err
