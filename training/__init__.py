"""Quantization-aware training with distillation (installed as `edgeclip.training`)."""
