"""Map open_clip-format CLIP weights onto a Hugging Face CLIPModel (and back) without open_clip.

One table of rules drives both directions, so import and export cannot drift apart. Only the
standard ViT + text transformer layout (OpenAI and most LAION checkpoints) is covered; anything
else shows up as unknown keys. Weights do not record the activation: OpenAI and `*-quickgelu`
checkpoints need `hidden_act="quick_gelu"` in `config`, most LAION ones `"gelu"`.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import CLIPConfig, CLIPModel

from edgeclip.errors import ModelError

# Non-weight entries some open_clip/OpenAI checkpoints carry; they hold nothing to load.
_IGNORED_KEYS = frozenset({"attn_mask", "input_resolution", "context_length", "vocab_size"})


@dataclass(frozen=True)
class _Rule:
    """One open_clip tensor <-> one or more HF tensors."""

    open_clip: str
    hf: tuple[str, ...]
    kind: str  # "copy", "transpose" (projections are stored [in, out]) or "qkv" (fused in_proj)

    def to_hf(self, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.kind == "qkv":
            return tuple(tensor.chunk(3, dim=0))
        return (tensor.t(),) if self.kind == "transpose" else (tensor,)

    def to_open_clip(self, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.kind == "qkv":
            return torch.cat(tensors, dim=0)
        return tensors[0].t() if self.kind == "transpose" else tensors[0]


def _tower_rules(oc: str, hf: str, layers: int) -> list[_Rule]:
    rules = []
    for i in range(layers):
        o, h = f"{oc}transformer.resblocks.{i}.", f"{hf}encoder.layers.{i}."
        for p in ("weight", "bias"):
            qkv = tuple(f"{h}self_attn.{n}_proj.{p}" for n in "qkv")
            rules.append(_Rule(f"{o}attn.in_proj_{p}", qkv, "qkv"))
            for o_name, h_name in (
                ("attn.out_proj", "self_attn.out_proj"),
                ("ln_1", "layer_norm1"),
                ("ln_2", "layer_norm2"),
                ("mlp.c_fc", "mlp.fc1"),
                ("mlp.c_proj", "mlp.fc2"),
            ):
                rules.append(_Rule(f"{o}{o_name}.{p}", (f"{h}{h_name}.{p}",), "copy"))
    return rules


def _layer_norm_rules(oc: str, hf: str) -> list[_Rule]:
    return [_Rule(f"{oc}.{p}", (f"{hf}.{p}",), "copy") for p in ("weight", "bias")]


def _rules(config: CLIPConfig) -> list[_Rule]:
    v, t = "vision_model.", "text_model."
    return [
        _Rule("visual.conv1.weight", (f"{v}embeddings.patch_embedding.weight",), "copy"),
        _Rule("visual.class_embedding", (f"{v}embeddings.class_embedding",), "copy"),
        _Rule("visual.positional_embedding", (f"{v}embeddings.position_embedding.weight",), "copy"),
        *_layer_norm_rules("visual.ln_pre", f"{v}pre_layrnorm"),
        *_tower_rules("visual.", v, config.vision_config.num_hidden_layers),
        *_layer_norm_rules("visual.ln_post", f"{v}post_layernorm"),
        _Rule("visual.proj", ("visual_projection.weight",), "transpose"),
        _Rule("token_embedding.weight", (f"{t}embeddings.token_embedding.weight",), "copy"),
        _Rule("positional_embedding", (f"{t}embeddings.position_embedding.weight",), "copy"),
        *_tower_rules("", t, config.text_config.num_hidden_layers),
        *_layer_norm_rules("ln_final", f"{t}final_layer_norm"),
        _Rule("text_projection", ("text_projection.weight",), "transpose"),
        _Rule("logit_scale", ("logit_scale",), "copy"),
    ]


def _read_state_dict(source) -> dict[str, torch.Tensor]:
    if isinstance(source, dict):
        state = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelError(
                f"open_clip checkpoint {str(source)!r} does not exist; pass a local .pt/.bin/.safetensors file"
            )
        try:
            state = (
                load_file(path)
                if path.suffix == ".safetensors"
                else torch.load(path, map_location="cpu", weights_only=True)
            )
        except Exception as err:  # torch and safetensors raise many unrelated types for a bad file
            raise ModelError(
                f"could not read open_clip checkpoint {path}: {err}; a TorchScript archive (OpenAI's original .pt) "
                "must be opened with torch.jit.load(path).state_dict() and the dict passed instead"
            ) from err
    if not isinstance(state, dict):
        raise ModelError(f"open_clip checkpoint {source!r} holds a {type(state).__name__}, not a state dict")
    if isinstance(state.get("state_dict"), dict):  # open_clip training checkpoints wrap the weights
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in _IGNORED_KEYS}


def _summary(items: list[str], shown: int = 8) -> str:
    """Name the first few offending keys; a wrong architecture can produce hundreds."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def load_open_clip_state_dict(state_dict_or_path, config: CLIPConfig) -> CLIPModel:
    """Build a CLIPModel from `config` and fill it from open_clip weights; eval mode.

    Every expected tensor must be present with the right shape and nothing may be left over, so a
    checkpoint that does not match `config` fails loudly instead of running half-random.
    """
    state = _read_state_dict(state_dict_or_path)
    rules = _rules(config)
    model = CLIPModel(config)
    targets = model.state_dict()
    expected = {r.open_clip for r in rules}
    missing = sorted(expected - state.keys())
    unknown = sorted(state.keys() - expected)
    mismatched, hf_state = [], {}
    for rule in rules:
        if rule.open_clip not in state:
            continue
        tensor = state[rule.open_clip]
        expected_shape = rule.to_open_clip(tuple(targets[n] for n in rule.hf)).shape
        if tensor.shape != expected_shape:
            mismatched.append(f"{rule.open_clip} is {tuple(tensor.shape)}, expected {tuple(expected_shape)}")
            continue
        hf_state.update(zip(rule.hf, rule.to_hf(tensor), strict=True))
    problems = [
        f"{label}: {_summary(items)}"
        for label, items in (("missing", missing), ("unknown", unknown), ("shape mismatch", mismatched))
        if items
    ]
    if problems:
        raise ModelError(
            "open_clip weights do not fit the given CLIPConfig (" + "; ".join(problems) + "); "
            "pass the config of the architecture the checkpoint was trained with"
        )
    model.load_state_dict(hf_state, strict=True)
    return model.eval()


def to_open_clip_state_dict(model: CLIPModel) -> dict[str, torch.Tensor]:
    """The inverse mapping: a CLIPModel's weights in open_clip layout (for export and round trips)."""
    hf_state = model.state_dict()
    return {
        r.open_clip: r.to_open_clip(tuple(hf_state[n] for n in r.hf)).contiguous()
        for r in _rules(model.config)
    }


# ---- open_clip model directories -----------------------------------------------------------------

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def is_open_clip_dir(path: Path) -> bool:
    """A folder laid out as open_clip publishes models: its config and weights, no HF config.json."""
    return (path / OPEN_CLIP_CONFIG).is_file() and not (path / "config.json").is_file()


def load_open_clip_dir(path: Path) -> CLIPModel:
    """The CLIPModel of an open_clip folder: `open_clip_config.json` (`{"model_cfg": ...}` or a bare
    model config) and `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`."""
    import json

    try:
        document = json.loads((path / OPEN_CLIP_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path / OPEN_CLIP_CONFIG} is not readable JSON ({err})") from err
    model_cfg = document.get("model_cfg", document) if isinstance(document, dict) else None
    weights = next((path / name for name in OPEN_CLIP_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise ModelError(f"{path} has no open_clip weights; put {' or '.join(OPEN_CLIP_WEIGHTS)} beside "
                         f"{OPEN_CLIP_CONFIG}")
    return load_open_clip_state_dict(weights, clip_config_from_open_clip(model_cfg, path))


def clip_config_from_open_clip(model_cfg, where) -> CLIPConfig:
    """The CLIPConfig of an open_clip model config (open_clip's own defaults where it is silent:
    64-wide vision heads, MLP ratio 4, GELU unless `quick_gelu`)."""
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= model_cfg.keys():
        raise ModelError(f"{where}: {OPEN_CLIP_CONFIG} has no embed_dim / vision_cfg / text_cfg; not an open_clip config")
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    foreign = [key for key in ("timm_model_name", "hf_model_name") if vision.get(key) or text.get(key)]
    if foreign:
        raise ModelError(f"{where}: towers built from {', '.join(foreign)} are not the standard ViT + text "
                         "transformer layout edgeclip maps; convert the model to an HF CLIPModel instead")
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    try:
        width, text_width = int(vision["width"]), int(text["width"])
        return CLIPConfig(
            projection_dim=int(model_cfg["embed_dim"]),
            vision_config=dict(image_size=int(vision["image_size"]), patch_size=int(vision["patch_size"]),
                               hidden_size=width, num_hidden_layers=int(vision["layers"]),
                               num_attention_heads=width // int(vision.get("head_width", 64)),
                               intermediate_size=int(width * float(vision.get("mlp_ratio", 4.0))), hidden_act=act),
            text_config=dict(vocab_size=int(text.get("vocab_size", 49408)),
                             max_position_embeddings=int(text.get("context_length", 77)), hidden_size=text_width,
                             num_hidden_layers=int(text["layers"]), num_attention_heads=int(text["heads"]),
                             intermediate_size=int(text_width * float(text.get("mlp_ratio", 4.0))), hidden_act=act),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{where}: {OPEN_CLIP_CONFIG} lacks or mistypes a tower field ({err})") from err
