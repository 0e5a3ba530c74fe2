"""Bit packing of ternary weights: base-3 for storage, 2 bits for compute.

Storage packing puts 5 trits in a byte (3^5 = 243 <= 256), 1.6 bits a weight, so checkpoints and
bundles stay small. Compute packing spends 2 bits a weight so a kernel can pull a trit out of a
byte with one shift and mask instead of a division.

Packers raise `QuantError` (the caller handed in something that is not trits); unpackers raise
`CheckpointError` (the packed bytes are malformed, i.e. a file was damaged or mislabelled).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgeclip.errors import CheckpointError, QuantError

TRITS_PER_BYTE = 5
CODES_PER_BYTE = 4
MAX_BASE3_BYTE = 3**TRITS_PER_BYTE - 1  # 242
_POWERS_OF_3 = 3 ** np.arange(TRITS_PER_BYTE, dtype=np.int64)
# Row b holds the 5 trits that byte b decodes to, so unpacking is one table lookup.
_BASE3_TABLE = ((np.arange(MAX_BASE3_BYTE + 1)[:, None] // _POWERS_OF_3) % 3 - 1).astype(np.int8)
_ZERO_TRIT_CODE = 1  # 2-bit code of trit 0, used to pad the packed axis


def pack_base3(values) -> np.ndarray:
    """Pack trits (any shape, C order) into ceil(n/5) bytes, byte = sum(d_i * 3^i), d = t+1."""
    trits = _checked_trits(values)
    digits = (trits.reshape(-1) + 1).astype(np.uint8)
    padding = -digits.size % TRITS_PER_BYTE
    # Padding digits are 0, so the last byte is the sum over the real digits only.
    groups = np.concatenate([digits, np.zeros(padding, np.uint8)]).reshape(-1, TRITS_PER_BYTE)
    packed = groups[:, 0].copy()
    for i in range(1, TRITS_PER_BYTE):
        packed += groups[:, i] * np.uint8(3**i)
    return packed


def unpack_base3(packed, shape: int | Sequence[int]) -> np.ndarray:
    """Invert `pack_base3`: return an int8 array of `shape` with values in {-1, 0, 1}."""
    shape = _checked_shape(shape)
    count = math.prod(shape)
    data = _checked_bytes(packed, "base-3")
    if data.ndim != 1 or data.size != -(-count // TRITS_PER_BYTE):
        raise CheckpointError(
            f"base-3 data has {data.size} bytes (shape {list(data.shape)}) but shape {list(shape)} "
            f"needs {-(-count // TRITS_PER_BYTE)} bytes in one dimension; the packed tensor and its "
            "recorded shape do not belong together, re-export the checkpoint"
        )
    if data.size and int(data.max()) > MAX_BASE3_BYTE:
        raise CheckpointError(
            f"base-3 data holds byte {int(data.max())} > {MAX_BASE3_BYTE}, which no 5 trits encode; "
            "the packed weights are corrupted, re-export the checkpoint"
        )
    tail = count % TRITS_PER_BYTE
    if tail and int(data[-1]) >= 3**tail:
        raise CheckpointError(
            f"base-3 data's last byte {int(data[-1])} has non-zero padding digits (it holds {tail} trits, "
            f"so it must be < {3**tail}); the packed weights are corrupted, re-export the checkpoint"
        )
    return _BASE3_TABLE[data].reshape(-1)[:count].reshape(shape)


def pack_2bit(values, axis: int = -1) -> np.ndarray:
    """Pack 4 consecutive trits along `axis` per byte, trit j of a group at bits 2j..2j+1.

    The code is t+1 (0b11 never occurs); the axis is padded to a multiple of 4 with zero trits.
    The result has the input's shape with that axis shrunk to ceil(len/4).
    """
    trits = _checked_trits(values)
    if trits.ndim == 0:
        raise QuantError("pack_2bit needs an array with at least one dimension, got a scalar")
    axis = _checked_axis(axis, trits.ndim)
    codes = (np.moveaxis(trits, axis, -1) + np.int8(1)).astype(np.uint8)
    padding = -codes.shape[-1] % CODES_PER_BYTE
    codes = np.pad(codes, [(0, 0)] * (codes.ndim - 1) + [(0, padding)], constant_values=_ZERO_TRIT_CODE)
    groups = codes.reshape(*codes.shape[:-1], codes.shape[-1] // CODES_PER_BYTE, CODES_PER_BYTE)
    packed = groups[..., 0].copy()
    for j in range(1, CODES_PER_BYTE):
        packed |= groups[..., j] << np.uint8(2 * j)
    return np.ascontiguousarray(np.moveaxis(packed, -1, axis))


def unpack_2bit(packed, length: int, axis: int = -1) -> np.ndarray:
    """Invert `pack_2bit`: return int8 trits with `axis` restored to `length` elements."""
    data = _checked_bytes(packed, "2-bit")
    if data.ndim == 0:
        raise CheckpointError("2-bit data must have at least one dimension, got a scalar")
    axis = _checked_axis(axis, data.ndim, error=CheckpointError)
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise CheckpointError(f"unpack_2bit length must be a non-negative int, got {length!r}")
    moved = np.moveaxis(data, axis, -1)
    if moved.shape[-1] != -(-length // CODES_PER_BYTE):
        raise CheckpointError(
            f"2-bit data has {moved.shape[-1]} bytes along axis {axis} but length {length} needs "
            f"{-(-length // CODES_PER_BYTE)}; the packed tensor and its recorded length do not belong together"
        )
    shifts = np.arange(0, 2 * CODES_PER_BYTE, 2, dtype=np.uint8)
    codes = ((moved[..., None] >> shifts) & np.uint8(3)).reshape(
        *moved.shape[:-1], moved.shape[-1] * CODES_PER_BYTE
    )
    if np.any(codes == 3):
        raise CheckpointError(
            "2-bit data holds code 0b11, which no trit encodes; the packed weights are corrupted"
        )
    if np.any(codes[..., length:] != _ZERO_TRIT_CODE):
        raise CheckpointError(
            "2-bit data has non-zero padding trits past the recorded length; it is corrupted"
        )
    trits = codes[..., :length].astype(np.int8) - np.int8(1)
    return np.ascontiguousarray(np.moveaxis(trits, -1, axis))


def base3_from_2bit(packed) -> np.ndarray:
    """Re-encode compute-packed bytes (any shape, C order) as base-3 storage, whatever the layout.

    Every byte of a compute packing holds four 2-bit codes t+1, so the flat byte stream is a
    trit stream in a kernel-chosen order; storing that stream 5 trits a byte keeps the order and
    lets a device get its kernel layout back with `two_bit_from_base3` and no layout knowledge.
    """
    data = _checked_bytes(packed, "2-bit").reshape(-1)
    return pack_base3(unpack_2bit(data, data.size * CODES_PER_BYTE))


def two_bit_from_base3(stored, shape: int | Sequence[int]) -> np.ndarray:
    """Invert `base3_from_2bit`: the compute-packed uint8 array of `shape`."""
    shape = _checked_shape(shape)
    count = math.prod(shape)
    return pack_2bit(unpack_base3(stored, count * CODES_PER_BYTE)).reshape(shape)


def retiled(packed, shape: Sequence[int]) -> np.ndarray:
    """Compute-packed weights [T, KQ, W] of one kernel family as the tiling [T', KQ, W'] of another
    whose tiles are narrower (W' divides W): each stored tile split into W/W' tiles, in order, the
    last dropped where T' < split*T (the wider tiling's padding rows). What the runner does at load
    for a fat bundle that stores one tiling (runner `Retiled`, tensors.h); `KQ` must agree."""
    data, want = _checked_bytes(packed, "2-bit"), _checked_shape(shape)
    if data.ndim != 3 or len(want) != 3 or want[1] != data.shape[1] or not want[2] or data.shape[2] % want[2]:
        raise QuantError(f"packed weights of shape {data.shape} have no tiling of shape {tuple(shape)}")
    (tiles, groups, width), (want_tiles, _, want_width) = data.shape, want
    split = width // want_width
    if not (tiles - 1) * split < want_tiles <= tiles * split:
        raise QuantError(f"packed weights of shape {data.shape} have no tiling of shape {tuple(shape)}")
    narrow = data.reshape(tiles, groups, split, want_width).transpose(0, 2, 1, 3).reshape(tiles * split, groups, want_width)
    return np.ascontiguousarray(narrow[:want_tiles])


def _as_numpy(values) -> np.ndarray:
    """Accept numpy arrays, torch tensors (any device, with or without grad) and nested lists."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _checked_trits(values) -> np.ndarray:
    array = _as_numpy(values)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise QuantError(
            f"expected an integer array of trits in {{-1, 0, 1}}, got dtype {array.dtype}; "
            "ternarize the weights first (edgeclip.quant)"
        )
    if array.size and (int(array.min()) < -1 or int(array.max()) > 1):
        bad = array[(array < -1) | (array > 1)]
        raise QuantError(
            f"expected trits in {{-1, 0, 1}}, found {bad.size} other values (e.g. {int(bad.flat[0])}); "
            "ternarize the weights first (edgeclip.quant)"
        )
    return array.astype(np.int8, copy=False)


def _checked_bytes(packed, kind: str) -> np.ndarray:
    data = _as_numpy(packed)
    if data.dtype != np.uint8:
        raise CheckpointError(
            f"{kind} packed data must be uint8, got {data.dtype}; it was stored with the wrong dtype"
        )
    return data


def _checked_shape(shape) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in dims):
        raise CheckpointError(
            f"shape must be non-negative ints, got {shape!r}; the recorded shape is malformed"
        )
    return tuple(int(d) for d in dims)


def _checked_axis(axis: int, ndim: int, error: type[Exception] = QuantError) -> int:
    if not -ndim <= axis < ndim:
        raise error(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim
