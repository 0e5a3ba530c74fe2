"""Property-based fuzzing of the format readers on mutated real inputs: whatever the bytes, a
reader returns or raises its own layer's error (never another exception), keeps its memory
bounded and finishes in time. Runs are bounded (max_examples) so the module takes seconds."""

from __future__ import annotations

import json
import math
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hostile import (
    extension_header,
    manifest_of,
    members,
    pax_record,
    small_bundle,
    with_extensions,
    with_manifest,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeclip.errors import BundleError, CheckpointError
from edgeclip.formats import index as index_format
from edgeclip.formats.arch_bounds import SIZE_LIMITS
from edgeclip.formats.bundle import (
    EXTENSIONS,
    MAX_EXTENSION_BYTES,
    VARIANTS,
    output_floor,
    payload_bytes,
    read_manifest,
    verify_bundle,
)
from edgeclip.formats.checkpoint import CONFIG_FILE, read_config
from edgeclip.formats.serial import CRC, HEADER_SIZE, MAGIC, Damaged, Frame, FrameDecoder, encode

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SECONDS_PER_EXAMPLE = 10

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@contextmanager
def in_time(seconds: int = SECONDS_PER_EXAMPLE):
    """Fail an example that hangs instead of hanging the suite."""
    def expire(*_):
        raise TimeoutError(f"a reader ran past {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def paths(tree, prefix=()):
    """Every path to a node inside a parsed JSON document (the root itself is not one)."""
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def replaced(tree, path: tuple, value, delete: bool):
    """A copy of `tree` with the node at `path` replaced by `value` (or removed, where `delete`)."""
    tree = json.loads(json.dumps(tree))
    node = tree
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return tree


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return small_bundle(tmp_path_factory.mktemp("fuzz") / "good.edgeclip")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from model_fixtures import make_tiny_clip_dir

    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp("fuzz-ckpt")
    _, directory = ternarize_source(str(make_tiny_clip_dir(root / "teacher")), TernaryConfig(policy="q-all"), root / "c")
    return directory


def _check_bundle(path: Path) -> None:
    """The property: BundleError or a manifest every reader can use; a refusal extracts nothing."""
    with in_time():
        try:
            read_manifest(path)
        except BundleError:
            pass
        out = path.parent / "out"
        try:
            manifest = verify_bundle(path, extract_to=out)
        except BundleError:
            assert not out.exists() and [p.name for p in path.parent.iterdir()] == [path.name]
            return
    for variant in VARIANTS:
        assert 0 < output_floor(manifest, variant) <= 1
        payload_bytes(manifest, variant)
    assert manifest["members"][manifest["runner"]]["executable"] and (out / manifest["runner"]).is_file()
    assert isinstance(manifest["target"]["arch"], str)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=8),
       cut=st.none() | st.integers(0, 10**6))
def test_verify_survives_damaged_bytes(bundle, flips, cut):
    data = bytearray(bundle.read_bytes())
    for position, mask in flips:
        data[position % len(data)] ^= mask
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.edgeclip"
        path.write_bytes(bytes(data[: None if cut is None else cut % (len(data) + 1)]))
        _check_bundle(path)


@FUZZ
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_verify_survives_any_manifest_field(bundle, data, value, delete):
    manifest = manifest_of(bundle)
    path = data.draw(st.sampled_from(list(paths(manifest))))
    edited = replaced(manifest, path, value, delete)
    with tempfile.TemporaryDirectory() as tmp:
        _check_bundle(with_manifest(bundle, Path(tmp) / "b.edgeclip", edited))


extension_data = st.one_of(
    st.binary(max_size=600),
    st.builds(pax_record, st.sampled_from(["mtime", "path", "size", "comment", "linkpath", "GNU.sparse.map"]),
              st.text(max_size=40)),
    st.builds(lambda n: b"x" * n, st.integers(MAX_EXTENSION_BYTES - 2, MAX_EXTENSION_BYTES + 2)),
)


@FUZZ
@given(data=st.data(), headers=st.lists(st.tuples(st.sampled_from(sorted(EXTENSIONS)), extension_data,
                                                  st.none() | st.integers(0, 2**40)), min_size=1, max_size=7))
def test_verify_bounds_tar_extension_headers(bundle, data, headers):
    """PAX and GNU long-name headers of any kind, content, declared size (None: their true size)
    and number, before any member: refused or accepted, never read past the bound."""
    files = members(bundle)
    before = data.draw(st.sampled_from(list(files)))
    raw = b"".join(extension_header(kind, len(stored) if declared is None else declared, stored)
                   for kind, stored, declared in headers)
    kind, stored, declared = headers[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = with_extensions(Path(tmp) / "b.edgeclip", files, before, raw)
        if (len(stored) if declared is None else declared) > MAX_EXTENSION_BYTES:
            with pytest.raises(BundleError, match=f"a {EXTENSIONS[kind]} in the tar declares .* over the limit"):
                verify_bundle(path)
        _check_bundle(path)


def _read(document_or_bytes, checkpoint: Path):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONFIG_FILE
        raw = document_or_bytes
        path.write_bytes(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
        with in_time():
            return read_config(path)


@FUZZ
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_read_config_survives_any_field(checkpoint, data, value, delete):
    document = json.loads((checkpoint / CONFIG_FILE).read_text())
    path = data.draw(st.sampled_from(list(paths(document))))
    try:
        _read(replaced(document, path, value, delete), checkpoint)
    except CheckpointError:
        pass


@FUZZ
@given(data=st.data(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4))
def test_read_config_survives_damaged_bytes(checkpoint, data, flips):
    raw = bytearray((checkpoint / CONFIG_FILE).read_bytes())
    for position, mask in flips:
        raw[position % len(raw)] ^= mask
    try:
        _read(bytes(raw), checkpoint)
    except CheckpointError:
        pass


@FUZZ
@given(data=st.data(), value=st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.booleans(),
                                       st.none()))
def test_every_size_field_is_an_integer_in_its_range_or_refused(checkpoint, data, value):
    document = json.loads((checkpoint / CONFIG_FILE).read_text())
    arch = document["model"]["arch"]
    tower = data.draw(st.sampled_from(["text_config", "vision_config"]))
    field = data.draw(st.sampled_from(sorted(set(arch[tower]) & set(SIZE_LIMITS))))
    arch[tower][field] = value
    text = json.dumps(document, allow_nan=True).encode()
    try:
        _read(text, checkpoint)
    except CheckpointError as err:
        assert field in str(err) or "JSON" in str(err) or "parameters" in str(err) or "patch_size" in str(err)
        return
    assert type(value) is int and 1 <= value <= SIZE_LIMITS[field]


frames = st.builds(lambda t, seq, payload: encode(t, seq, payload),
                   st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=200))


@FUZZ
@given(chunks=st.lists(st.one_of(frames, st.binary(max_size=300), st.just(MAGIC), st.just(MAGIC * 40)), max_size=30),
       split=st.integers(1, 97), limit=st.sampled_from([64, 4096]))
def test_frame_decoder_takes_any_bytes_with_a_bounded_buffer(chunks, split, limit):
    decoder = FrameDecoder(max_payload=limit)
    stream = b"".join(chunks)
    with in_time():
        for start in range(0, len(stream), split):
            for event in decoder.feed(stream[start:start + split]):
                assert isinstance(event, (Frame, Damaged))
                assert not isinstance(event, Frame) or len(event.payload) <= limit
            assert decoder.pending < HEADER_SIZE + limit + CRC.size
    assert decoder.skipped_bytes + decoder.pending <= len(stream)


def small_index(encoding: str = "binary") -> bytes:
    """A real 5-item, 40-dimension index as the runner writes it (edgeclip.bundle.index_host)."""
    import numpy as np

    from edgeclip.bundle.index_host import build_index

    rows = np.random.default_rng(0).standard_normal((5, 40)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    model = {"bundle": "b", "tower": "text", "variant": "ternary", "module_sha256": "a" * 64}
    return build_index(rows, ["one", "two", "three", "fünf", ""], model, encoding=encoding)


def _check_index(data: bytes) -> None:
    """The property: IndexFormatError, or an index whose every section lies inside the bytes."""
    with in_time():
        try:
            info = index_format.parse(data)
        except index_format.IndexFormatError:
            return
    assert info.layout.total == len(data) and len(info.items) == info.count and len(info.lines) == info.count


@FUZZ
@given(encoding=st.sampled_from(sorted(index_format.ENCODINGS)),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=8),
       cut=st.none() | st.integers(0, 10**6))
def test_index_parse_survives_damaged_bytes(encoding, flips, cut):
    data = bytearray(small_index(encoding))
    for position, mask in flips:
        data[position % len(data)] ^= mask
    _check_index(bytes(data[: None if cut is None else cut % (len(data) + 1)]))


@FUZZ
@given(field=st.sampled_from([(12, "I"), (16, "I"), (20, "I"), (24, "I"), (32, "Q"), (40, "Q")]),
       value=st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 2**31, 2**32 - 1]), wide=st.integers(0, 2**64 - 1))
def test_index_prefix_fields_are_bounded_before_use(field, value, wide):
    """Any count, dim, header or text size with a valid CRC: refused by its bound or the length
    check, never read past the end or allocated from."""
    import struct
    import zlib

    offset, kind = field
    data = bytearray(small_index())
    struct.pack_into("<" + kind, data, offset, value if kind == "I" else wide)
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[index_format.PREFIX:])))
    _check_index(bytes(data))


def test_fuzz_inputs_are_the_real_formats(bundle, checkpoint):
    """The fuzzers start from inputs the readers accept, so mutations explore near valid data."""
    assert verify_bundle(bundle)["runner"] == "bin/edgeclip-runner"
    assert index_format.parse(small_index()).items[3] == "fünf"
    document = read_config(checkpoint / CONFIG_FILE)
    assert math.prod(document["tensors"][next(iter(document["tensors"]))]["shape"]) > 0
