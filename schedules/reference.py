"""NumPy reference for the ternary kernels: the oracle every family is tested against.

The int8 path mirrors the TE arithmetic step for step, in float32, so a kernel can be checked
exactly (up to float rounding of the final rescale):

    absmax[m] = max_k |x[m, k]|
    inv[m]    = 127 / max(absmax[m], ACT_EPS)                       (float32)
    q[m, k]   = clip(floor(x[m, k] * inv[m] + 0.5), -127, 127)     (round half up, int)
    acc[m, n] = sum_k q[m, k] * T[n, k]                             (exact integer)
    y[m, n]   = (float32(acc) * (absmax[m] / 127)) * scale[n] + bias[n]

Public API (stable; the ARM and CUDA families import it):
    ternary_linear_ref(x, T, scale, bias=None, act="fp32"|"int8") -> float32[M, N]
    quantize_activations_ref(x) -> (q int32[M, K], row_scale float32[M])
    embedding_ref(ids, T, scale) -> float32[len(ids), D]
    expand_scale(scale, N, groups=None) -> float32[N]  (per-tensor / channel / group -> per channel)
"""

from __future__ import annotations

import numpy as np

#: Floor on the per-row absmax, so an all-zero row quantizes to zeros instead of dividing by 0.
ACT_EPS = np.float32(1e-30)
QMAX = np.float32(127.0)


def expand_scale(scale, n: int, groups=None) -> np.ndarray:
    """Turn a per-tensor (1 value), per-channel (N) or per-group scale into N per-channel values.

    `groups` lists the slice sizes along N (e.g. fused QKV: [d, d, d]) with one scale per slice.
    """
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if groups is not None:
        if len(groups) != scale.size or sum(groups) != n:
            raise ValueError(f"group sizes {list(groups)} must sum to N={n} with one scale each")
        return np.repeat(scale, groups).astype(np.float32)
    if scale.size == 1:
        return np.full(n, scale[0], dtype=np.float32)
    if scale.size != n:
        raise ValueError(f"scale has {scale.size} values; expected 1 or N={n}")
    return scale


def quantize_activations_ref(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8 quantization; returns (q in [-127, 127], absmax/127 per row)."""
    x = np.asarray(x, dtype=np.float32)
    absmax = np.max(np.abs(x), axis=1)
    inv = QMAX / np.maximum(absmax, ACT_EPS)
    q = np.clip(np.floor(x * inv[:, None] + np.float32(0.5)), -127, 127).astype(np.int32)
    return q, (absmax / QMAX).astype(np.float32)


def ternary_linear_ref(x, T, scale, bias=None, act: str = "fp32") -> np.ndarray:
    """y = scale * (x @ T.T) + bias with T in {-1, 0, 1} of shape [N, K]; scale 1 or N values."""
    x = np.asarray(x, dtype=np.float32)
    T = np.asarray(T)
    n = T.shape[0]
    scale_n = expand_scale(scale, n)
    bias_n = np.zeros(n, np.float32) if bias is None else np.asarray(bias, np.float32)
    if act == "fp32":
        acc = (x.astype(np.float64) @ T.T.astype(np.float64)).astype(np.float32)
        return acc * scale_n + bias_n
    if act == "int8":
        q, row_scale = quantize_activations_ref(x)
        acc = (q.astype(np.int64) @ T.T.astype(np.int64)).astype(np.float32)
        return (acc * row_scale[:, None]) * scale_n + bias_n
    raise ValueError(f"act must be 'fp32' or 'int8', got {act!r}")


def embedding_ref(ids, T, scale) -> np.ndarray:
    """out[i, :] = scale[ids[i] or 0] * T[ids[i], :]; scale is per tensor (1) or per row (V)."""
    T = np.asarray(T)
    ids = np.asarray(ids)
    scale = np.asarray(scale, np.float32).reshape(-1)
    row_scale = scale[ids] if scale.size > 1 else np.full(ids.shape, scale[0], np.float32)
    return (T[ids].astype(np.float32) * row_scale[:, None]).astype(np.float32)
