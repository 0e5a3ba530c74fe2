"""Frames of the edgeclip serial protocol (docs/serial-protocol.md) and a decoder that survives noise.

A frame is `MAGIC | version | type | seq | length | header CRC32 | payload | CRC32`. The header has
its own CRC so a flipped length byte is caught at once instead of making the reader wait for
bytes that will never come; the trailing CRC covers the header fields and the payload. Anything
that does not decode is skipped one byte at a time until the next marker, so garbage on the line
costs bytes, never the session.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"\xa5\xec"
VERSION = 3  # 2: one install layout; HELLO names the manifest, INFO says what the device runs; 3: INFO has cpu_features
HEADER = struct.Struct(">2sBBII")  # magic, version, type, seq, payload length
CRC = struct.Struct(">I")
OFFSET = struct.Struct(">Q")  # DATA payloads start with one; ACK and NAK payloads are one
HEADER_SIZE = HEADER.size + CRC.size
MAX_PAYLOAD = 64 * 1024
DEFAULT_CHUNK = 4096
SEQ_MASK = 0xFFFFFFFF


class FrameType(enum.IntEnum):
    HELLO = 1  # host -> device, JSON: sha256, size, name, arch, manifest_sha256
    INFO = 2  # device -> host, JSON: version, arch, free, offset, max_payload, current, previous, up_to_date
    DATA = 3  # host -> device, OFFSET + bytes
    ACK = 4  # device -> host, OFFSET: bytes of the bundle the device now holds
    NAK = 5  # device -> host, OFFSET: the frame was damaged or out of order; send again
    END = 6  # host -> device, JSON: sha256
    DONE = 7  # device -> host, JSON: installed, previous
    ERROR = 8  # device -> host, JSON: code, message
    ABORT = 9  # host -> device, no payload: the host gives up; keep the partial for resume


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""
    version: int = VERSION


@dataclass(frozen=True)
class Damaged:
    """A frame whose header was intact (so `seq` is trustworthy) but which cannot be used."""

    seq: int
    reason: str


def encode(frame_type: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte frame limit")
    head = HEADER.pack(MAGIC, version, int(frame_type), seq & SEQ_MASK, len(payload))
    return head + CRC.pack(zlib.crc32(head)) + payload + CRC.pack(_payload_crc(head, payload))


def _payload_crc(head: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(head[len(MAGIC) :]))


class FrameDecoder:
    """Bytes in, frames out. Keeps partial frames between calls; counts what it had to skip."""

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        self.max_payload = max_payload
        self.skipped_bytes = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame | Damaged]:
        self._buffer += data
        events = []
        while (event := self._next()) is not None:
            events.append(event)
        return events

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def drop_pending(self) -> None:
        self._skip(len(self._buffer))

    def _skip(self, count: int) -> None:
        del self._buffer[:count]
        self.skipped_bytes += count

    def _next(self) -> Frame | Damaged | None:
        buf = self._buffer
        while True:
            start = buf.find(MAGIC)
            if start < 0:
                self._skip(len(buf) - (1 if buf.endswith(MAGIC[:1]) else 0))
                return None
            self._skip(start)
            if len(buf) < HEADER_SIZE:
                return None
            head = bytes(buf[: HEADER.size])
            if zlib.crc32(head) != CRC.unpack_from(buf, HEADER.size)[0]:
                self._skip(1)  # a marker inside garbage or a damaged header: look for the next one
                continue
            _, version, frame_type, seq, length = HEADER.unpack(head)
            if length > self.max_payload:
                self._skip(1)
                return Damaged(seq, f"frame length {length} is over the limit of {self.max_payload}")
            end = HEADER_SIZE + length
            if len(buf) < end + CRC.size:
                return None
            payload = bytes(buf[HEADER_SIZE:end])
            if _payload_crc(head, payload) != CRC.unpack_from(buf, end)[0]:
                self._skip(1)
                return Damaged(seq, "payload CRC mismatch")
            del buf[: end + CRC.size]
            return Frame(frame_type, seq, payload, version)
