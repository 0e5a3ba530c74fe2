"""The search index file that `edgeclip-runner index` writes and `search` maps (docs/bundle-format.md,
"Search index"); the runner's index_file.h checks exactly this schema.

Layout, little-endian, every section starting on a 64-byte boundary (zero padding):

    0   magic b"ECINDEX\\0"        8   u32 version (1)        12  u32 encoding (1 int8, 2 binary)
    16  u32 count                  20  u32 dim                24  u32 header bytes (JSON)
    28  u32 CRC-32 of bytes 64..   32  u64 item text bytes    40  u64 file bytes    48..64 zero
    64  JSON header {"kind": "text"|"image", "model": {"bundle", "tower", "variant", "module_sha256"}}
    mean f32[dim] | scales f32[count] | codes i8[count][stride 32] | sign bits (binary only)
    u8[count][stride 8] | lines u32[count] (1-based text line, 0 for images) | offsets u64[count + 1]
    | item text (UTF-8)

Each row is stored as its residual r = x - mean from the corpus mean (float64 sums row by row, then
float32): codes are `round(r / scale)` with `scale = max|r| / 127` in float32 (ties to even), bit j
of a row is `code[j] > 0`; a query's score is q . mean + scale * (q . codes). Sizes are bounded and the file's length must equal what its counts give before
anything else is read; the CRC covers everything after the prefix. Standard library only: the
host verbs and tests check an index fetched from a board without numpy.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"ECINDEX\x00"
VERSION = 1  # 1: the first index format
ENCODINGS = {"int8": 1, "binary": 2}
KINDS = ("text", "image")
MODEL_FIELDS = ("bundle", "tower", "variant", "module_sha256")
MAX_COUNT = 10_000_000
MAX_DIM = 4096
MAX_HEADER_BYTES = 65536
MAX_STRING_BYTES = 1 << 30
PREFIX = 64
ALIGN = 64
_PREFIX = struct.Struct("<8sIIIIIIQQ16s")


class IndexFormatError(ValueError):
    """The bytes are not a valid index (the message says what is wrong)."""


def _up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def code_stride(dim: int) -> int:
    """Bytes per int8 row: the dimension zero-padded to 32, what the SIMD loops step by."""
    return _up(dim, 32)


def bit_stride(dim: int) -> int:
    """Bytes per sign-bit row: whole 64-bit words."""
    return _up((dim + 7) // 8, 8)


@dataclass(frozen=True)
class Layout:
    """Where each section starts, from the prefix's counts alone."""

    mean: int
    scales: int
    codes: int
    bits: int
    lines: int
    offsets: int
    strings: int
    total: int

    @classmethod
    def of(cls, encoding: int, count: int, dim: int, header_bytes: int, string_bytes: int) -> Layout:
        mean = _up(PREFIX + header_bytes, ALIGN)
        scales = _up(mean + 4 * dim, ALIGN)
        codes = _up(scales + 4 * count, ALIGN)
        bits = _up(codes + code_stride(dim) * count, ALIGN)
        lines = _up(bits + (bit_stride(dim) * count if encoding == ENCODINGS["binary"] else 0), ALIGN)
        offsets = _up(lines + 4 * count, ALIGN)
        strings = offsets + 8 * (count + 1)
        return cls(mean, scales, codes, bits, lines, offsets, strings, strings + string_bytes)


@dataclass(frozen=True)
class IndexInfo:
    """A checked index: its counts, encoding, kind, the model that built it, and its items."""

    encoding: str
    count: int
    dim: int
    kind: str
    model: dict
    layout: Layout
    lines: tuple[int, ...]
    items: tuple[str, ...]

    def vector_bytes(self) -> int:
        """What the vectors take (mean, scales, codes, sign bits), padding excluded: the storage figure."""
        per_row = 4 + self.dim + (bit_stride(self.dim) if self.encoding == "binary" else 0)
        return 4 * self.dim + self.count * per_row


def encode(encoding: str, kind: str, model: dict, mean: bytes, scales: bytes, codes: bytes, bits: bytes | None,
           lines: list[int], items: list[str], dim: int) -> bytes:
    """An index file's bytes from already-quantized rows (codes padded to code_stride, bits to bit_stride)."""
    if encoding not in ENCODINGS or kind not in KINDS:
        raise IndexFormatError(f"encoding {encoding!r} or kind {kind!r} unknown")
    code = ENCODINGS[encoding]
    count = len(items)
    header = json.dumps({"kind": kind, "model": {f: model[f] for f in MODEL_FIELDS}}).encode()
    texts = [item.encode("utf-8") for item in items]
    layout = Layout.of(code, count, dim, len(header), sum(map(len, texts)))
    out = bytearray(layout.total)
    out[PREFIX:PREFIX + len(header)] = header
    out[layout.mean:layout.mean + 4 * dim] = mean
    out[layout.scales:layout.scales + 4 * count] = scales
    out[layout.codes:layout.codes + code_stride(dim) * count] = codes
    if code == ENCODINGS["binary"]:
        out[layout.bits:layout.bits + bit_stride(dim) * count] = bits
    out[layout.lines:layout.lines + 4 * count] = struct.pack(f"<{count}I", *lines)
    offsets, at = [0], 0
    for text in texts:
        at += len(text)
        offsets.append(at)
    out[layout.offsets:layout.strings] = struct.pack(f"<{count + 1}Q", *offsets)
    out[layout.strings:] = b"".join(texts)
    crc = zlib.crc32(memoryview(out)[PREFIX:])
    out[:PREFIX] = _PREFIX.pack(MAGIC, VERSION, code, count, dim, len(header), crc, at, layout.total, bytes(16))
    return bytes(out)


def parse(data: bytes, where: str = "the index") -> IndexInfo:
    """Check `data` against the schema (bounds first, then length, CRC, header, offsets) and
    return what it holds; any failure is one IndexFormatError naming the problem."""
    def fail(problem: str) -> IndexFormatError:
        return IndexFormatError(f"{where} {problem}; rebuild it with `edgeclip index`")

    if len(data) < PREFIX:
        raise fail(f"is {len(data)} bytes, shorter than the {PREFIX}-byte prefix (truncated?)")
    magic, version, code, count, dim, header_bytes, crc, string_bytes, total, reserved = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise fail("is not an edgeclip index (bad magic)")
    if version != VERSION:
        raise fail(f"has format version {version}; this edgeclip reads version {VERSION}")
    names = {v: k for k, v in ENCODINGS.items()}
    if code not in names:
        raise fail(f"has an unknown encoding {code}")
    if not 1 <= count <= MAX_COUNT:
        raise fail(f"claims {count} items, not 1 to {MAX_COUNT}")
    if not 1 <= dim <= MAX_DIM:
        raise fail(f"claims dimension {dim}, not 1 to {MAX_DIM}")
    if not 2 <= header_bytes <= MAX_HEADER_BYTES:
        raise fail(f"has a header of {header_bytes} bytes")
    if string_bytes > MAX_STRING_BYTES:
        raise fail(f"claims {string_bytes} bytes of item text, over 1 GiB")
    if reserved != bytes(16):
        raise fail("has non-zero reserved bytes")
    layout = Layout.of(code, count, dim, header_bytes, string_bytes)
    if total != layout.total or len(data) != layout.total:
        raise fail(f"is {len(data)} bytes, not the {layout.total} its counts give (truncated?)")
    if zlib.crc32(memoryview(data)[PREFIX:]) != crc:
        raise fail("is damaged (its CRC-32 does not match)")
    try:
        header = json.loads(data[PREFIX:PREFIX + header_bytes].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise fail(f"has a header that is not JSON ({err})") from err
    if not isinstance(header, dict) or header.get("kind") not in KINDS:
        raise fail("has a header whose kind is not text or image")
    model = header.get("model")
    if not isinstance(model, dict) or not all(isinstance(model.get(f), str) for f in MODEL_FIELDS):
        raise fail(f"has a header whose model lacks one of {', '.join(MODEL_FIELDS)}")
    offsets = struct.unpack_from(f"<{count + 1}Q", data, layout.offsets)
    if offsets[0] != 0 or offsets[-1] != string_bytes or any(a > b for a, b in zip(offsets, offsets[1:], strict=False)):
        raise fail("has bad item offsets")
    blob = data[layout.strings:]
    try:
        items = tuple(blob[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:], strict=False))
    except UnicodeDecodeError as err:
        raise fail(f"has an item that is not UTF-8 ({err})") from err
    lines = struct.unpack_from(f"<{count}I", data, layout.lines)
    return IndexInfo(names[code], count, dim, header["kind"], model, layout, lines, items)


def with_items(data: bytes, items: list[str]) -> bytes:
    """The same index with its items' texts or paths replaced (e.g. a board's copies' paths by the
    caller's), CRC made anew; the vectors, lines and model are kept byte for byte."""
    info = parse(data)
    if len(items) != info.count:
        raise IndexFormatError(f"{len(items)} items given for an index of {info.count}")
    at, count, dim = info.layout, info.count, info.dim
    bits = data[at.bits:at.bits + bit_stride(dim) * count] if info.encoding == "binary" else None
    return encode(info.encoding, info.kind, info.model, data[at.mean:at.mean + 4 * dim],
                  data[at.scales:at.scales + 4 * count],
                  data[at.codes:at.codes + code_stride(dim) * count], bits, list(info.lines), items, dim)
