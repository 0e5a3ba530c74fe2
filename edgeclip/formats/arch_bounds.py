"""Bounds on a model architecture's sizes, checked before a model is built from it.

Every family's architecture (`model.arch` of a checkpoint) is plain JSON in the Hugging Face
config vocabulary: nested tables (`vision_config`, `text`, ...) whose fields named below size the
tensors. The check walks every table, so it needs no knowledge of which family a config belongs to
and covers a new family that uses the same names. Limits are well above every model edgeclip
targets (ViT-B/32 CLIP: 12 layers, hidden 768, vocab 49408) and low enough that a model within
them is built in seconds. Standard library only.
"""

from __future__ import annotations

from edgeclip.formats.jsonbound import depth

# field -> largest accepted value; every one must be an integer >= 1.
SIZE_LIMITS = {
    "num_hidden_layers": 256,
    "hidden_size": 16384,
    "intermediate_size": 65536,
    "num_attention_heads": 256,
    "vocab_size": 1 << 20,
    "max_position_embeddings": 1 << 16,
    "type_vocab_size": 1024,
    "image_size": 4096,
    "patch_size": 4096,
    "num_channels": 16,
    "projection_dim": 16384,
}
MAX_DEPTH = 8
# What a table that describes a layer stack but omits a size is built with (the largest default
# among the Hugging Face configs edgeclip reads), so a missing field cannot hide a huge model.
DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}
_STACK_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size")


def arch_problem(arch: dict) -> str | None:
    """Why `arch` cannot be built safely (a size of the wrong type or out of range), or None."""
    if depth(arch, MAX_DEPTH) > MAX_DEPTH:
        return f"field `model.arch` is nested more than {MAX_DEPTH} levels deep"
    for where, table in _tables(arch, "model.arch"):
        for key, limit in SIZE_LIMITS.items():
            if key in table:
                value = table[key]
                if type(value) is not int or not 1 <= value <= limit:
                    return f"field `{where[:80]}.{key}` is {repr(value)[:40]}; it must be an integer from 1 to {limit}"
        if any(key in table for key in _STACK_FIELDS):
            hidden = table.get("hidden_size", DEFAULTS["hidden_size"])
            heads = table.get("num_attention_heads", DEFAULTS["num_attention_heads"])
            if hidden % heads:
                return f"field `{where[:80]}.hidden_size` {hidden} is not a multiple of num_attention_heads {heads}"
        if table.get("patch_size", 1) > table.get("image_size", SIZE_LIMITS["image_size"]):
            return f"field `{where[:80]}.patch_size` is larger than its image_size"
    return None


def parameter_estimate(arch: dict) -> int:
    """Roughly how many parameters `arch` builds: per transformer stack its attention and MLP
    weights, token/position/patch embeddings; a lower bound up to small terms (norms, biases)."""
    total = 0
    for _, table in _tables(arch, "model.arch"):
        if not any(key in table for key in _STACK_FIELDS):
            continue
        hidden = table.get("hidden_size", DEFAULTS["hidden_size"])
        layers = table.get("num_hidden_layers", DEFAULTS["num_hidden_layers"])
        inner = table.get("intermediate_size", 4 * hidden)
        total += layers * (4 * hidden * hidden + 2 * hidden * inner)
        total += hidden * (table.get("vocab_size", 0) + table.get("max_position_embeddings", 0))
        if "image_size" in table and "patch_size" in table:
            patches = (table["image_size"] // table["patch_size"]) ** 2
            total += hidden * (table.get("num_channels", 3) * table["patch_size"] ** 2 + patches + 1)
    return total


def _tables(value, where: str):
    """(dotted path, table) for `value` and every table nested in it."""
    stack = [(where, value)]
    while stack:
        path, table = stack.pop()
        if isinstance(table, dict):
            yield path, table
            stack.extend((f"{path}.{key}", child) for key, child in table.items() if isinstance(child, dict))
