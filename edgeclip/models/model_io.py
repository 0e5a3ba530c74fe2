"""A whole model <-> an edgeclip checkpoint directory.

Ternary layers are stored as base-3 trits (`<layer>.weight.trits`, 1.6 bits a weight) plus float32
scales (`<layer>.weight.scale`); every other tensor of the state dict is stored as it is. The
config records the model family and architecture so the loader can rebuild the model without the
original teacher files, and the per-layer quantization so it can re-create the ternary layers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgeclip.errors import CheckpointError
from edgeclip.models.checkpoint import read_checkpoint, write_checkpoint
from edgeclip.models.families import family
from edgeclip.models.families.base import ModelFamily
from edgeclip.quant import TernaryConfig, freeze, non_finite, quantize, ternary_layers
from edgeclip.quant.packing import pack_base3, unpack_base3

TRITS, SCALE = ".weight.trits", ".weight.scale"


def save_model(model: nn.Module, directory, family: ModelFamily, arch: dict, quant: TernaryConfig | None,
               replace: bool = False) -> Path:
    """Write `model` (float, latent-ternary or frozen-ternary) as a packed checkpoint; a directory
    already holding a model is replaced only with `replace`."""
    layers = ternary_layers(model)
    tensors = {}
    layer_meta = {}
    for name, layer in layers.items():
        ternary = layer.ternary()
        tensors[name + TRITS] = pack_base3(ternary.values.numpy())
        tensors[name + SCALE] = ternary.scales.detach().float().contiguous()
        layer_meta[name] = {"shape": list(ternary.values.shape), "rows_per_scale": ternary.rows_per_scale}
    owned = {f"{name}.{leaf}" for name in layers for leaf in ("weight", "learned_scales", "trits", "scales")}
    for key, value in model.state_dict().items():
        if key not in owned:
            tensors[key] = value.detach().contiguous().clone()
    config = {
        "family": family.name,
        "arch": arch,
        "quant": None if quant is None else {**quant.to_dict(), "layers": layer_meta},
    }
    return write_checkpoint(directory, tensors, config, replace)


def load_model(directory) -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes, ternary layers frozen, in eval mode."""
    tensors, config = read_checkpoint(directory)
    model = family(config["family"]).build(config["arch"])
    quant = config.get("quant")
    if quant is not None:
        layers = quant["layers"]
        quantize(model, TernaryConfig.from_dict(quant), filter_fn=lambda module, name: name in layers)
        freeze(model)
        rebuilt = ternary_layers(model)
        if set(rebuilt) != set(layers):
            raise CheckpointError(
                f"{directory}: checkpoint lists ternary layers {sorted(set(layers) - set(rebuilt))[:3]} "
                "that the rebuilt model does not have; the config does not match this edgeclip version"
            )
        for name, layer in rebuilt.items():
            values = torch.from_numpy(unpack_base3(tensors.pop(name + TRITS).numpy(), layers[name]["shape"]))
            layer.load_ternary(values, tensors.pop(name + SCALE))
    state = model.state_dict()
    missing = sorted(set(state) - set(tensors) - _ternary_keys(model))
    unexpected = sorted(set(tensors) - set(state))
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: tensors do not fit the {config['family']} model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}); the checkpoint is from another model"
        )
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"{directory}: tensor shapes do not fit the {config['family']} model: {err}") from err
    broken = non_finite(model)
    if broken:
        raise CheckpointError(f"{directory}: {len(broken)} tensors hold NaN or infinite values ({', '.join(broken[:3])}); "
                              "the checkpoint is damaged or its training diverged: retrain or re-export it")
    return model.eval(), config


def _ternary_keys(model: nn.Module) -> set[str]:
    return {f"{name}.{leaf}" for name in ternary_layers(model) for leaf in ("trits", "scales")}
