"""Ternary quantization core: one tensor (`ternarize_tensor`), one layer (`TernaryLinear`, ...),
one model (`quantize`), and what it all weighs (`model_stats`)."""

from edgeclip.quant.layers import TernaryConv2d, TernaryEmbedding, TernaryLinear, TernaryWeight
from edgeclip.quant.policy import POLICIES, layer_role
from edgeclip.quant.stats import model_stats, non_finite
from edgeclip.quant.surgery import QuantReport, TernaryConfig, freeze, quantize, ternary_layers
from edgeclip.quant.ternarize import (
    DEFAULT_BETA,
    DEFAULT_GRANULARITY,
    TernaryTensor,
    parse_granularity,
    ternarize_tensor,
)

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_GRANULARITY",
    "POLICIES",
    "QuantReport",
    "TernaryConfig",
    "TernaryConv2d",
    "TernaryEmbedding",
    "TernaryLinear",
    "TernaryTensor",
    "TernaryWeight",
    "freeze",
    "layer_role",
    "model_stats",
    "non_finite",
    "parse_granularity",
    "quantize",
    "ternarize_tensor",
    "ternary_layers",
]
