"""Where models come from: the specs the CLI accepts for `--model` / `--teacher`.

'minilm' (the bundled all-MiniLM-L6-v2), 'demo' (the cached built-in teacher), a Hugging Face
CLIP, BERT-family, ViT or CLIP-vision directory, an open_clip folder (`open_clip_config.json` + its weights, as
open_clip publishes models), or an edgeclip checkpoint (float or ternary). Each yields a model
and its family (`edgeclip.models.families`).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from edgeclip.errors import ModelError
from edgeclip.formats.checkpoint import FORMAT
from edgeclip.models.families import family, family_of
from edgeclip.models.families.base import ModelFamily
from edgeclip.models.open_clip_state import is_open_clip_dir, load_open_clip_dir


def load_source(spec: str) -> tuple[nn.Module, ModelFamily, dict]:
    """(float model, family, arch) for a teacher spec: 'minilm', 'demo', or a model directory."""
    if spec == "minilm":
        from edgeclip.models.minilm import minilm_path

        return _load_sentence_encoder(minilm_path())
    if spec == "demo":
        from edgeclip.models.demo import demo_teacher_dir

        spec = str(demo_teacher_dir())
    if is_open_clip_dir(Path(spec)):
        model = load_open_clip_dir(Path(spec))
        found = family_of(model)
        return model, found, found.arch(model)
    config = _read_config(spec)
    if config.get("format") == FORMAT:
        return _load_float_checkpoint(spec)
    if config.get("model_type") == "clip":
        from edgeclip.models.hf_clip import load_hf_clip

        model = load_hf_clip(spec)
        found = family_of(model)
        return model, found, found.arch(model)
    if config.get("model_type") == "bert":
        return _load_sentence_encoder(Path(spec))
    if config.get("model_type") in ("vit", "clip_vision_model"):
        from edgeclip.models.image_encoder import load_image_encoder

        model = load_image_encoder(spec)
        found = family_of(model)
        return model, found, found.arch(model)
    raise ModelError(
        f"{spec}/config.json has model_type {config.get('model_type')!r}; edgeclip loads CLIP ('clip'), "
        "BERT-family ('bert') and image ('vit', 'clip_vision_model') encoders, 'minilm', 'demo', or an "
        "edgeclip checkpoint"
    )


def open_model(model_or_spec) -> tuple[nn.Module, ModelFamily]:
    """(model in eval mode, family) from a module, an edgeclip checkpoint (float or ternary) or a
    teacher spec: the one door for verbs that take any model (compile, tune, export, eval)."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec.eval(), family_of(model_or_spec)
    config_file = Path(model_or_spec) / "config.json"
    if config_file.is_file() and _read_config(str(model_or_spec)).get("format") == FORMAT:
        from edgeclip.models.model_io import load_model

        model, saved = load_model(model_or_spec)
        return model.eval(), family(saved["family"])
    model, found, _ = load_source(str(model_or_spec))
    return model, found


def select_towers(model_or_ckpt, towers=None, seq_len: int | None = None, batch: int = 1) -> tuple[ModelFamily, dict]:
    """(family, {name: Tower}) of the requested towers (default: all the model has), in request order,
    with inputs of `batch` rows."""
    model, found = open_model(model_or_ckpt)
    available = found.towers(model, batch, seq_len)
    wanted = list(towers or available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ModelError(f"{found.name} models have towers {sorted(available)}; {missing} do not exist")
    return found, {name: available[name] for name in wanted}


def _load_sentence_encoder(path: Path) -> tuple[nn.Module, ModelFamily, dict]:
    from edgeclip.models.minilm import SentenceEncoder, load_minilm
    from edgeclip.models.sentence_dir import sentence_head

    bert, _ = load_minilm(path)
    model = SentenceEncoder(bert, sentence_head(Path(path))).eval()
    found = family_of(model)
    return model, found, found.arch(model)


def _load_float_checkpoint(spec: str) -> tuple[nn.Module, ModelFamily, dict]:
    from edgeclip.models.model_io import load_model

    model, saved = load_model(spec)
    if saved.get("quant") is not None:
        raise ModelError(f"{spec} is already ternary; start from its float teacher instead")
    return model, family(saved["family"]), saved["arch"]


def _read_config(spec: str) -> dict:
    path = Path(spec)
    config_file = path / "config.json"
    if not path.is_dir():
        raise ModelError(
            f"model {spec!r} does not exist; pass a local model directory, 'minilm' or 'demo' (edgeclip never downloads)"
        )
    if not config_file.is_file():
        raise ModelError(f"{spec} has no config.json; pass an HF model directory, an open_clip folder "
                         "(open_clip_config.json + weights) or an edgeclip checkpoint")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelError(f"{config_file} is not valid JSON ({err})") from err
