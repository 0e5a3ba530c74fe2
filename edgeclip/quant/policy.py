"""Which modules a policy ternarizes, decided from fully-qualified module names.

The names cover HF CLIP (q_proj/k_proj/v_proj/out_proj, mlp.fc1/fc2, visual/text_projection,
patch_embedding, token_embedding) and BERT-family encoders (attention.self.query/key/value,
attention.output.dense, intermediate.dense, output.dense, word_embeddings).
"""

from __future__ import annotations

import re

from torch import nn

from edgeclip.errors import QuantError

POLICIES = ("q-all", "q-ffn", "q-attn")

_ATTENTION = re.compile(r"(^|\.)(q_proj|k_proj|v_proj|out_proj|qkv|query|key|value)$|attention\.output\.dense$")
_FFN = re.compile(r"(^|\.)(fc1|fc2|intermediate\.dense)$|(^|\.)(?<!attention\.)output\.dense$")
_TOKEN_EMBEDDING = re.compile(r"(^|\.)(token_embedding|word_embeddings)$")


def layer_role(name: str, module: nn.Module) -> str | None:
    """'attention', 'ffn', 'linear' (other linears, e.g. final projections), 'patch', 'token', or None."""
    if isinstance(module, nn.Linear):
        if _ATTENTION.search(name):
            return "attention"
        if _FFN.search(name):
            return "ffn"
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "patch"
    if isinstance(module, nn.Embedding) and _TOKEN_EMBEDDING.search(name):
        return "token"
    return None


def policy_roles(policy: str) -> frozenset[str]:
    if policy == "q-all":
        return frozenset({"attention", "ffn", "linear", "patch", "token"})
    if policy == "q-ffn":
        return frozenset({"ffn"})
    if policy == "q-attn":
        return frozenset({"attention"})
    raise QuantError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
