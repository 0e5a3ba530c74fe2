"""How much of a model is ternary and what it costs to store."""

from __future__ import annotations

from torch import nn

from edgeclip.quant.layers import TernaryLinear, TernaryWeight

TRIT_BITS = 8 / 5  # base-3 storage packs five trits per byte


def model_stats(model: nn.Module) -> dict:
    """Counts over weights (biases, norms and embeddings included in 'all').

    Storage assumes the checkpoint format: trits at 1.6 bits, scales and every float tensor at
    fp32 (or fp16 for the fp16 comparison).
    """
    ternary_layers = [m for m in model.modules() if isinstance(m, TernaryWeight)]
    ternary = sum(m.weight_shape.numel() for m in ternary_layers)
    ternary_linear = sum(m.weight_shape.numel() for m in ternary_layers if isinstance(m, TernaryLinear))
    zeros = sum(int((m.ternary().values == 0).sum()) for m in ternary_layers)
    scales = sum(m.ternary().scales.numel() for m in ternary_layers)
    latent = {id(m.weight) for m in ternary_layers if not m.frozen}
    floats = sum(p.numel() for p in model.parameters() if id(p) not in latent)
    floats += sum(b.numel() for name, b in model.named_buffers() if b.is_floating_point() and not _is_scale(name))
    float_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    total = ternary + floats
    stored_bits_fp32 = ternary * TRIT_BITS + (scales + floats) * 32
    stored_bits_fp16 = ternary * TRIT_BITS + (scales + floats) * 16
    return {
        "parameters": total,
        "ternary_weights": ternary,
        "ternary_layers": len(ternary_layers),
        "ternary_fraction_all": ternary / total if total else 0.0,
        "ternary_fraction_linear": _share(ternary_linear, ternary_linear + float_linear),
        "sparsity": _share(zeros, ternary),
        "bits_per_weight": stored_bits_fp32 / total if total else 0.0,
        "bits_per_ternary_weight": _share(ternary * TRIT_BITS + scales * 32, ternary),
        "size_bytes": stored_bits_fp32 / 8,
        "fp32_size_bytes": total * 4,
        "compression_vs_fp32": total * 32 / stored_bits_fp32 if total else 0.0,
        "compression_vs_fp16": total * 16 / stored_bits_fp16 if total else 0.0,
    }


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _is_scale(buffer_name: str) -> bool:
    return buffer_name.endswith(".scales")


def non_finite(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers (ternary scales included) holding a NaN or an infinity:
    such a model cannot give a meaningful embedding, and an all-NaN output would pass a cosine check."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, tensor in tensors if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
