"""Base-3 storage packing and 2-bit compute packing: exact round trips, sizes, layout, rejects."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeclip.errors import CheckpointError, QuantError
from edgeclip.quant.packing import (
    base3_from_2bit,
    pack_2bit,
    pack_base3,
    two_bit_from_base3,
    unpack_2bit,
    unpack_base3,
)

ODD_SIZES = [0, 1, 2, 3, 4, 5, 6, 7, 11, 13, 17, 31, 97, 101, 1009]


def trit_arrays(min_dims=0, min_side=0):
    return hnp.arrays(
        np.int8,
        hnp.array_shapes(min_dims=min_dims, max_dims=4, min_side=min_side, max_side=13),
        elements=st.integers(-1, 1),
    )


def random_trits(shape, seed=0):
    return np.random.default_rng(seed).integers(-1, 2, size=shape).astype(np.int8)


@settings(max_examples=200, deadline=None)
@given(trit_arrays())
def test_base3_round_trip_any_shape(trits):
    packed = pack_base3(trits)
    assert packed.dtype == np.uint8
    assert packed.shape == (math.ceil(trits.size / 5),)
    restored = unpack_base3(packed, trits.shape)
    assert restored.dtype == np.int8
    np.testing.assert_array_equal(restored, trits)


@pytest.mark.parametrize("size", ODD_SIZES)
def test_base3_round_trip_odd_sizes(size):
    trits = random_trits(size, seed=size)
    packed = pack_base3(trits)
    assert packed.size == math.ceil(size / 5)
    assert packed.max(initial=0) <= 242
    np.testing.assert_array_equal(unpack_base3(packed, size), trits)


def test_base3_layout_is_little_end_first_digit_t_plus_one():
    # digits 0,1,2,2,2 -> 0 + 3 + 18 + 54 + 162; then digits 0,1 with zero padding -> 3
    packed = pack_base3(np.array([-1, 0, 1, 1, 1, -1, 0], np.int8))
    np.testing.assert_array_equal(packed, [237, 3])
    np.testing.assert_array_equal(pack_base3(np.ones(5, np.int8)), [242])


def test_base3_accepts_torch_and_other_int_dtypes():
    trits = random_trits((4, 9), seed=1)
    expected = pack_base3(trits)
    np.testing.assert_array_equal(pack_base3(torch.from_numpy(trits)), expected)
    np.testing.assert_array_equal(pack_base3(trits.astype(np.int64)), expected)
    np.testing.assert_array_equal(unpack_base3(torch.from_numpy(expected), [4, 9]), trits)


@pytest.mark.parametrize(
    "bad",
    [np.array([0, 2], np.int8), np.array([-2], np.int64), np.array([0.0, 1.0]), np.array([True, False])],
    ids=["two", "minus-two", "float", "bool"],
)
def test_base3_rejects_non_trits(bad):
    with pytest.raises(QuantError, match="trits"):
        pack_base3(bad)


def test_base3_rejects_malformed_packed_data():
    packed = pack_base3(random_trits(12))
    with pytest.raises(CheckpointError, match="needs 3 bytes"):
        unpack_base3(packed[:2], 12)
    with pytest.raises(CheckpointError, match="needs 2 bytes"):
        unpack_base3(packed, 10)
    with pytest.raises(CheckpointError, match="243 > 242"):
        unpack_base3(np.array([1, 243, 0], np.uint8), 12)
    with pytest.raises(CheckpointError, match="padding"):
        unpack_base3(np.array([1, 1, 9], np.uint8), 12)  # last byte holds 2 trits, so must be < 9
    with pytest.raises(CheckpointError, match="uint8"):
        unpack_base3(packed.astype(np.int16), 12)
    with pytest.raises(CheckpointError, match="shape"):
        unpack_base3(packed, (-1, 12))


@st.composite
def trits_and_axis(draw):
    trits = draw(trit_arrays(min_dims=1))
    return trits, draw(st.integers(-trits.ndim, trits.ndim - 1))


@settings(max_examples=200, deadline=None)
@given(trits_and_axis())
def test_2bit_round_trip_every_axis(case):
    trits, axis = case
    packed = pack_2bit(trits, axis=axis)
    expected_shape = list(trits.shape)
    expected_shape[axis] = math.ceil(trits.shape[axis] / 4)
    assert packed.dtype == np.uint8
    assert list(packed.shape) == expected_shape
    assert packed.flags.c_contiguous
    codes = (packed[..., None] >> np.array([0, 2, 4, 6], np.uint8)) & 3
    assert not np.any(codes == 3)
    restored = unpack_2bit(packed, trits.shape[axis], axis=axis)
    assert restored.dtype == np.int8
    np.testing.assert_array_equal(restored, trits)


@pytest.mark.parametrize("length", ODD_SIZES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_2bit_round_trip_odd_lengths(length, axis):
    shape = [3, 5]
    shape[axis] = length
    trits = random_trits(shape, seed=length)
    packed = pack_2bit(trits, axis=axis)
    assert packed.shape[axis] == math.ceil(length / 4)
    np.testing.assert_array_equal(unpack_2bit(packed, length, axis=axis), trits)


def test_2bit_layout_element_j_at_bits_2j_padded_with_zero_trits():
    # codes 0,1,2,1 -> 0 | 1<<2 | 2<<4 | 1<<6; a lone 1 is code 2 padded with three code-1 zeros
    np.testing.assert_array_equal(pack_2bit(np.array([-1, 0, 1, 0], np.int8)), [100])
    np.testing.assert_array_equal(pack_2bit(np.array([1], np.int8)), [2 | 1 << 2 | 1 << 4 | 1 << 6])
    # K-major packing of a (K=4, N=2) weight: each byte holds one column's 4 K values
    weight = np.array([[-1, 1], [0, 1], [1, 1], [0, 1]], np.int8)
    np.testing.assert_array_equal(pack_2bit(weight, axis=0), [[100, 0b10101010]])


def test_2bit_rejects_bad_input():
    with pytest.raises(QuantError, match="trits"):
        pack_2bit(np.array([0, 3], np.int8))
    with pytest.raises(QuantError, match="scalar"):
        pack_2bit(np.int8(1))
    with pytest.raises(QuantError, match="axis 2"):
        pack_2bit(random_trits((2, 3)), axis=2)


def test_2bit_rejects_malformed_packed_data():
    packed = pack_2bit(random_trits((3, 6)))
    with pytest.raises(CheckpointError, match="length 9 needs 3"):
        unpack_2bit(packed, 9)
    with pytest.raises(CheckpointError, match="0b11"):
        unpack_2bit(np.array([[0b11000101]], np.uint8), 4)
    with pytest.raises(CheckpointError, match="padding"):
        unpack_2bit(np.array([[0b00000101]], np.uint8), 2)  # trits 3 and 4 must be code 1
    with pytest.raises(CheckpointError, match="uint8"):
        unpack_2bit(packed.astype(np.int8), 6)
    with pytest.raises(CheckpointError, match="non-negative"):
        unpack_2bit(packed, -1)


@settings(max_examples=200, deadline=None)
@given(trit_arrays(min_dims=1))
def test_compute_packing_stores_as_base3_and_comes_back_byte_identical(trits):
    """Bundles ship kernel-layout weights 1.6-bit and rebuild the exact bytes at load."""
    packed = pack_2bit(trits, axis=-1)
    stored = base3_from_2bit(packed)
    assert stored.size == math.ceil(4 * packed.size / 5)
    restored = two_bit_from_base3(stored, packed.shape)
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, packed)


def test_base3_storage_of_2bit_keeps_the_byte_stream_order():
    # byte 0 holds trits [1, -1, 0, 1] (codes 2, 0, 1, 2), byte 1 holds [0, 0, 0, -1]
    packed = pack_2bit(np.array([[1, -1, 0, 1], [0, 0, 0, -1]], np.int8))
    np.testing.assert_array_equal(base3_from_2bit(packed), pack_base3(np.array([1, -1, 0, 1, 0, 0, 0, -1], np.int8)))


def test_base3_storage_refuses_bytes_that_are_not_2bit_trits():
    with pytest.raises(CheckpointError, match="0b11"):
        base3_from_2bit(np.array([0b11000101], np.uint8))
