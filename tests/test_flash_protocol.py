"""Frame encoding and the resynchronising decoder, without any I/O."""

import os
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeclip.formats.serial import (
    CRC,
    HEADER,
    MAGIC,
    MAX_PAYLOAD,
    Damaged,
    Frame,
    FrameDecoder,
    FrameType,
    encode,
)

frames = st.lists(
    st.tuples(st.sampled_from(list(FrameType)), st.integers(0, 2**32 - 1), st.binary(max_size=300)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(frames, st.binary(max_size=200), st.integers(1, 97))
def test_frames_survive_garbage_and_any_read_split(sent, garbage, split):
    stream = garbage.replace(MAGIC, b"") + b"".join(encode(t, s, p) for t, s, p in sent)
    decoder = FrameDecoder()
    got = []
    for at in range(0, len(stream), split):
        got += decoder.feed(stream[at : at + split])
    assert got == [Frame(t, s, p) for t, s, p in sent]


def test_a_flipped_bit_anywhere_never_yields_a_wrong_frame():
    rng = random.Random(7)
    good = encode(FrameType.DATA, 42, os.urandom(500))
    follow = encode(FrameType.END, 43, b'{"sha256": "x"}')
    for _ in range(300):
        damaged = bytearray(good)
        damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        events = FrameDecoder().feed(bytes(damaged) + follow)
        assert events[-1] == Frame(FrameType.END, 43, b'{"sha256": "x"}')  # resynchronised on the next marker
        assert all(isinstance(e, Damaged) for e in events[:-1])


def test_payload_damage_is_reported_with_the_sequence_number():
    frame = bytearray(encode(FrameType.DATA, 9, b"x" * 100))
    frame[-10] ^= 0xFF
    assert FrameDecoder().feed(bytes(frame)) == [Damaged(9, "payload CRC mismatch")]


def test_oversized_length_is_refused_without_waiting_for_the_payload():
    head = HEADER.pack(MAGIC, 1, FrameType.DATA, 5, MAX_PAYLOAD + 1)
    events = FrameDecoder().feed(head + CRC.pack(zlib.crc32(head)))
    assert len(events) == 1 and events[0].seq == 5 and "over the limit" in events[0].reason


def test_stale_partial_frame_can_be_dropped():
    decoder = FrameDecoder()
    assert decoder.feed(encode(FrameType.DATA, 1, b"y" * 1000)[:600]) == []
    assert decoder.pending == 600
    decoder.drop_pending()
    assert decoder.feed(encode(FrameType.ABORT, 2)) == [Frame(FrameType.ABORT, 2)]


def test_encode_refuses_payloads_over_the_limit():
    with pytest.raises(ValueError, match="limit"):
        encode(FrameType.DATA, 1, bytes(MAX_PAYLOAD + 1))
