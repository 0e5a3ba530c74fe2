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
