"""Shared tensor-expression definitions of the ternary linear and embedding (all families).

Every family schedules the SAME computation, so one numpy reference checks them all
(`edgeclip.schedules.reference`). What a family chooses (its `family.KernelFamily`) is the
`LinearSpec` it builds from a caller's `LinearShape`: `tile_n`, the output channels its integer
dot-product instruction produces at once (x86 AVX-512: 16, AVX2: 8, aarch64 and CUDA: 16), the
activation offset (128: uint8 activations for u8 x s8 VNNI / maddubs, with a weight-sum
correction; 0: int8 activations for s8 x s8 sdot / smull / dp4a), the row padding its
micro-kernel wants (`row_block`) and whether a bias is always taken; then it applies its own
schedule.

Weight layout (why: the inner instruction wants a contiguous [tile_n, 4] int8 tile per group
of 4 k, and unpacking must be a whole-vector shift + mask: byte b of a packed row holds the
same tile position b of 4 consecutive k-groups, as bitnet's I2_S layout does):

    unpacked int8[Np / tile_n, Kp / 4, tile_n, 4]    [no, ko, ni, ki] = T[no*tile_n + ni, 4*ko + ki]
                                                     (stage "w_unpack", computed per N tile)
    w_packed uint8[Np / tile_n, Kp / 16, tile_n * 4] byte [no, kq, 4*ni + ki] holds ko = 4*kq + j
                                                     at bits 2j..2j+1, code = t + 1
                                                     (= `pack_2bit` along that j axis)

Kp = K rounded up to 16, Np = N rounded up to tile_n; padded weights are 0.

PrimFunc parameters (destination passing; the output comes last), in this order:

    x      float32[M, K]
    w_packed  uint8[Np / tile_n, Kp / 16, tile_n * 4]
               (spec.packed=False, int8 mode only: int8 w_int8[Np / tile_n, Kp / 4, tile_n, 4] instead,
               `unpacked_weights(T, tile_n)`; no "w_unpack" stage)
    w_sum  int32[Np]          only act="int8" with act_offset=128: sum_k T[n, k], compensates
                              the +128 offset of the uint8 activations (u8 x s8 is what VNNI /
                              maddubs multiply; s8 x s8 families (ARM sdot/smull, CUDA dp4a) use
                              act_offset=0: int8 activations, no w_sum)
    scale  float32[1] (scale_kind "tensor") or float32[N] ("channel"; "group" is expanded to
           per channel with `reference.expand_scale` by the caller)
    bias   float32[N]         only when bias=True
    y      float32[M, N]

Stage (sblock) names a schedule can rely on:
    act="int8": "x_absmax" (max |x| per row), "x_quant" (uint8 [Mp, Kp]), "w_unpack",
                "acc" (int32 [Mp, Np/tile_n, tile_n], reduce axes ko, ki), "y"
                (Mp = M rounded up to `row_block`, 1 by default: padded rows are computed
                and dropped, so a schedule can block rows without a ragged tail)
    act="fp32": "w_unpack" (laid out [no, ko, ki, ni]: channels contiguous), "acc" (float32,
                same shape, signs applied by select), "y"

The int8 quantization arithmetic is documented (and mirrored) in `reference.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from edgeclip.errors import KernelError

from .reference import ACT_EPS, QMAX

K_GROUP = 4  # k elements per dot-product lane (the ", 4]" of the [tile_n, 4] tile)
K_PACK = 4 * K_GROUP  # k elements covered by one packed byte row (4 k-groups per byte)
SCALE_KINDS = ("tensor", "channel", "group")
ACT_MODES = ("int8", "fp32")


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _check_linear(shape) -> None:
    """Refuse shapes and modes no kernel computes (LinearShape and LinearSpec alike)."""
    if shape.scale_kind not in SCALE_KINDS:
        raise KernelError(f"scale kind {shape.scale_kind!r} unknown; use one of {SCALE_KINDS}")
    if shape.act not in ACT_MODES:
        raise KernelError(f"activation mode {shape.act!r} unknown; use one of {ACT_MODES}")
    if min(shape.M, shape.K, shape.N) < 1:
        raise KernelError(f"linear shape M={shape.M} K={shape.K} N={shape.N} must be positive")


@dataclass(frozen=True)
class LinearShape:
    """What a caller asks a family for: x[M, K] -> y[M, N], the scale kind, the activation mode
    and whether the kernel takes a bias. The family turns it into its `LinearSpec`."""

    M: int
    K: int
    N: int
    scale_kind: str = "channel"
    act: str = "int8"
    bias: bool = True

    def __post_init__(self):
        _check_linear(self)


@dataclass(frozen=True)
class LinearSpec:
    """One ternary linear as a family computes it: the shape plus the family's layout choices."""

    M: int
    K: int
    N: int
    scale_kind: str = "channel"
    act: str = "int8"
    tile_n: int = 16
    bias: bool = True
    act_offset: int = 128  # 128: uint8 activations (u8 x s8 dot products); 0: int8 (s8 x s8)
    row_block: int = 1  # int8 mode: pad x_quant / acc rows to a multiple (register blocks of rows)
    packed: bool = True  # int8 mode, False: weights arrive unpacked (`unpacked_weights`), as a
    #                      baseline that measures what the 2-bit packing saves in bandwidth

    def __post_init__(self):
        _check_linear(self)
        if self.act_offset not in (0, 128):
            raise KernelError(f"act_offset {self.act_offset} unsupported; use 128 (uint8) or 0 (int8)")
        if min(self.tile_n, self.row_block) < 1:
            raise KernelError(f"tile_n={self.tile_n} and row_block={self.row_block} must be positive")

    @property
    def Kp(self) -> int:
        return round_up(self.K, K_PACK)

    @property
    def unpacked_shape(self) -> tuple[int, int, int, int]:
        return (self.Np // self.tile_n, self.Kp // K_GROUP, self.tile_n, K_GROUP)

    @property
    def Mp(self) -> int:
        return round_up(self.M, self.row_block)

    @property
    def Np(self) -> int:
        return round_up(self.N, self.tile_n)

    @property
    def packed_shape(self) -> tuple[int, int, int]:
        return (self.Np // self.tile_n, self.Kp // K_PACK, self.tile_n * K_GROUP)

    @property
    def scale_len(self) -> int:
        return 1 if self.scale_kind == "tensor" else self.N


def _pack_2bit(values: np.ndarray) -> np.ndarray:
    from edgeclip.quant.packing import pack_2bit

    return pack_2bit(values, axis=-1)


def pack_weights(T: np.ndarray, tile_n: int) -> dict[str, np.ndarray]:
    """Pack ternary T int8[N, K] into the kernel layout: {"w_packed": uint8, "w_sum": int32[Np]}."""
    T = np.asarray(T)
    if T.ndim != 2 or not np.isin(T, (-1, 0, 1)).all():
        raise KernelError("ternary weights must be a 2-D array with values in {-1, 0, 1}")
    n, k = T.shape
    np_, kp = round_up(n, tile_n), round_up(k, K_PACK)
    padded = np.zeros((np_, kp), np.int8)
    padded[:n, :k] = T
    # [no, ni, kq, j, ki] -> [no, kq, ni, ki, j]: the 4 k-groups j of one byte go last
    tiles = padded.reshape(np_ // tile_n, tile_n, kp // K_PACK, 4, K_GROUP).transpose(0, 2, 1, 4, 3)
    w_packed = _pack_2bit(np.ascontiguousarray(tiles)).reshape(np_ // tile_n, kp // K_PACK, tile_n * K_GROUP)
    return {"w_packed": np.ascontiguousarray(w_packed, dtype=np.uint8),
            "w_sum": padded.sum(axis=1, dtype=np.int32)}


def unpacked_weights(T: np.ndarray, tile_n: int) -> np.ndarray:
    """Ternary T int8[N, K] as the int8 tiles the kernel unpacks to ([no, ko, ni, ki], see top)."""
    n, k = T.shape
    np_, kp = round_up(n, tile_n), round_up(k, K_PACK)
    padded = np.zeros((np_, kp), np.int8)
    padded[:n, :k] = T
    return np.ascontiguousarray(padded.reshape(np_ // tile_n, tile_n, kp // K_GROUP, K_GROUP).transpose(0, 2, 1, 3))


def unpack_code(byte, j):
    """Ternary value of element j in a packed byte, as int8 (8-bit lanes vectorize to one
    shift + mask + subtract per 32 bytes; signed math, never a uint subtraction)."""
    code = (byte >> (2 * j).astype("uint8")) & tirx.const(3, "uint8")
    return code.astype("int8") - tirx.const(1, "int8")


def _scaled(spec: LinearSpec, scale, bias, n, value):
    s = scale[0] if spec.scale_kind == "tensor" else scale[n]
    out = value * s
    return out + bias[n] if bias is not None else out


def linear_te(spec: LinearSpec) -> tuple[list[te.Tensor], te.Tensor]:
    """Tensor expressions of the linear; returns (parameters in call order, output)."""
    tn = spec.tile_n
    n_tiles, k_groups = spec.Np // tn, spec.Kp // K_GROUP
    x = te.placeholder((spec.M, spec.K), "float32", name="x")
    w_packed = te.placeholder(spec.packed_shape, "uint8", name="w_packed")
    scale = te.placeholder((spec.scale_len,), "float32", name="scale")
    bias = te.placeholder((spec.N,), "float32", name="bias") if spec.bias else None
    if spec.act == "int8" and not spec.packed:  # the baseline takes the unpacked tiles in w_packed's place
        w = w_packed = te.placeholder(spec.unpacked_shape, "int8", name="w_int8")
    elif spec.act == "int8":  # [no, ko, ni, ki]: the [tile_n, 4] operand of the dot instruction
        w = te.compute(
            (n_tiles, k_groups, tn, K_GROUP),
            lambda no, ko, ni, ki: unpack_code(w_packed[no, ko // 4, ni * K_GROUP + ki], ko % 4),
            name="w_unpack",
        )
    else:  # [no, ko, ki, ni]: channels contiguous, one vector select per k
        w_t = te.compute(
            (n_tiles, k_groups, K_GROUP, tn),
            lambda no, ko, ki, ni: unpack_code(w_packed[no, ko // 4, ni * K_GROUP + ki], ko % 4),
            name="w_unpack",
        )
    ko = te.reduce_axis((0, k_groups), name="ko")
    ki = te.reduce_axis((0, K_GROUP), name="ki")
    if spec.act == "int8":
        w_sum = te.placeholder((spec.Np,), "int32", name="w_sum")
        kr = te.reduce_axis((0, spec.K), name="kr")
        xq_dtype = "uint8" if spec.act_offset else "int8"
        absmax = te.compute((spec.M,), lambda m: te.max(te.abs(x[m, kr]), axis=kr), name="x_absmax")

        def quantize(m, k):
            inv = tirx.const(float(QMAX), "float32") / te.max(absmax[m], tirx.const(float(ACT_EPS), "float32"))
            q = te.floor(x[m, k] * inv + tirx.const(0.5, "float32"))
            q = te.min(te.max(q, tirx.const(-127.0, "float32")), tirx.const(127.0, "float32"))
            return (q.astype("int32") + spec.act_offset).astype(xq_dtype)

        def quantize_padded(m, k):
            inside = [cond for cond, pads in ((k < spec.K, spec.K < spec.Kp), (m < spec.M, spec.M < spec.Mp)) if pads]
            if not inside:
                return quantize(m, k)
            pad = tirx.const(spec.act_offset, xq_dtype)  # padded k and rows quantize to zero
            m_in = tirx.min(m, spec.M - 1) if spec.M < spec.Mp else m
            k_in = tirx.min(k, spec.K - 1) if spec.K < spec.Kp else k
            return tirx.if_then_else(tirx.all(*inside), quantize(m_in, k_in), pad)

        xq = te.compute((spec.Mp, spec.Kp), quantize_padded, name="x_quant")
        acc = te.compute(
            (spec.Mp, n_tiles, tn),
            lambda m, no, ni: te.sum(
                xq[m, ko * K_GROUP + ki].astype("int32") * w[no, ko, ni, ki].astype("int32"), axis=[ko, ki]
            ),
            name="acc",
        )

        def epilogue(m, n):
            exact = acc[m, n // tn, n % tn] - w_sum[n] * spec.act_offset if spec.act_offset else acc[m, n // tn, n % tn]
            return _scaled(spec, scale, bias, n, exact.astype("float32") * (absmax[m] / tirx.const(float(QMAX), "float32")))

        params = [x, w_packed, w_sum, scale] if spec.act_offset else [x, w_packed, scale]
    else:
        def signed_x(m, no, ni):
            k = ko * K_GROUP + ki
            zero = tirx.const(0.0, "float32")
            xv = x[m, k] if spec.K == spec.Kp else tirx.if_then_else(k < spec.K, x[m, tirx.min(k, spec.K - 1)], zero)
            t = w_t[no, ko, ki, ni]
            return tirx.Select(t > 0, xv, zero) - tirx.Select(t < 0, xv, zero)

        acc = te.compute(
            (spec.M, n_tiles, tn), lambda m, no, ni: te.sum(signed_x(m, no, ni), axis=[ko, ki]), name="acc"
        )

        def epilogue(m, n):
            return _scaled(spec, scale, bias, n, acc[m, n // tn, n % tn])

        params = [x, w_packed, scale]
    y = te.compute((spec.M, spec.N), epilogue, name="y")
    params += [bias] if bias is not None else []
    return params, y


def linear_prim_func(spec: LinearSpec) -> tirx.PrimFunc:
    """Unscheduled TensorIR of the linear (families schedule it; also the generic fallback)."""
    params, y = linear_te(spec)
    return te.create_prim_func(params + [y]).with_attr("global_symbol", "ternary_linear")


# ----------------------------------------------------------------------------------- embedding
def pack_embedding(T: np.ndarray) -> np.ndarray:
    """Pack ternary rows T int8[V, D] along D: uint8[V, ceil(D / 4)]."""
    T = np.asarray(T)
    v, d = T.shape
    padded = np.zeros((v, round_up(d, K_GROUP)), np.int8)
    padded[:, :d] = T
    return np.ascontiguousarray(_pack_2bit(padded), dtype=np.uint8)


def embedding_te(n_ids: int, vocab: int, dim: int, per_row_scale: bool):
    """out[i, d] = scale[ids[i] | 0] * T[ids[i], d] gathered from 2-bit packed rows."""
    ids = te.placeholder((n_ids,), "int32", name="ids")
    rows = te.placeholder((vocab, round_up(dim, K_GROUP) // K_GROUP), "uint8", name="rows")
    scale = te.placeholder((vocab if per_row_scale else 1,), "float32", name="scale")

    def gather(i, d):
        t = unpack_code(rows[ids[i], d // K_GROUP], d % K_GROUP)
        s = scale[ids[i]] if per_row_scale else scale[0]
        return tirx.Select(t == 0, tirx.const(0.0, "float32"), tirx.Select(t > 0, s, -s))

    out = te.compute((n_ids, dim), gather, name="embedding")
    return [ids, rows, scale], out


def embedding_prim_func(n_ids: int, vocab: int, dim: int, per_row_scale: bool = False) -> tirx.PrimFunc:
    """Scheduled-enough embedding gather (memory bound: vectorize along D, nothing else)."""
    from tvm import s_tir

    params, out = embedding_te(n_ids, vocab, dim, per_row_scale)
    sch = s_tir.Schedule(te.create_prim_func(params + [out]).with_attr("global_symbol", "ternary_embedding"))
    _, d = sch.get_loops(sch.get_sblock("embedding"))
    if dim % 16 == 0:
        sch.vectorize(sch.split(d, [None, 16])[1])
    return sch.mod["main"]
