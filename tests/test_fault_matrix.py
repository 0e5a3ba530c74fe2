"""Hostile input, end to end: ONE table of faults, each run through the real `edgeclip` command.

A row is: the input (a real small bundle, checkpoint or board file, broken as an attacker would),
the command, the fragment its one-line error must hold, its exit status, the peak RSS the command
may reach, and the state it must leave (nothing under the test folder changes: no extraction,
no partial bundle, no rewritten input). Every row is a finding of the adversarial review.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile import (
    edit_field,
    extension_header,
    manifest_of,
    members,
    pax_record,
    run_measured,
    small_bundle,
    sparse_manifest_bundle,
    tree_state,
    with_extensions,
    with_manifest,
    with_sparse_member,
)

from edgeclip.formats.bundle import MANIFEST, MAX_EXTENSION_BYTES
from edgeclip.targets.loader import SHIPPED_DIR

NO_HOST = "nobody@192.0.2.1"  # TEST-NET-1: never answers, so a deploy that got past verifying would hang
BUNDLE_RSS_MB = 300
TORCH_RSS_MB = 1500  # `inspect` and `build` import torch; an architecture built for real needs far more


@dataclass(frozen=True)
class Inputs:
    """What the faults start from: a good bundle and a good ternary checkpoint."""

    bundle: Path
    checkpoint: Path


@dataclass(frozen=True)
class Fault:
    name: str
    make: Callable[[Path, Inputs], list[str]]  # writes the faulty input under the folder, returns the args
    message: str
    status: int = 1
    max_rss_mb: int = BUNDLE_RSS_MB


def _edit_manifest(edit: Callable[[dict], object], verb: str = "verify"):
    def make(tmp: Path, given: Inputs) -> list[str]:
        manifest = manifest_of(given.bundle)
        edit(manifest)
        bad = with_manifest(given.bundle, tmp / "bad.edgeclip", manifest)
        return [verb, str(bad), *(["--host", NO_HOST] if verb == "deploy" else [])]
    return make


def _raw_manifest(data: bytes, verb: str = "verify"):
    def make(tmp: Path, given: Inputs) -> list[str]:
        bad = with_manifest(given.bundle, tmp / "bad.edgeclip", data)
        return [verb, str(bad), *(["--host", NO_HOST] if verb == "deploy" else [])]
    return make


def _sparse(real_size: int):
    def make(tmp: Path, given: Inputs) -> list[str]:
        return ["verify", str(sparse_manifest_bundle(tmp / "sparse.edgeclip", real_size))]
    return make


def _cut_in_manifest(tmp: Path, given: Inputs) -> list[str]:
    cut = tmp / "cut.edgeclip"
    cut.write_bytes(given.bundle.read_bytes()[:512 + 100])
    return ["verify", str(cut)]


def _sparse_member(tmp: Path, given: Inputs) -> list[str]:
    return ["verify", str(with_sparse_member(tmp / "sparse.edgeclip", members(given.bundle), "model/fp32.bin"))]


def _extensions(before: str, headers: Callable[[], bytes]):
    """The good bundle with raw tar extension headers (PAX, GNU long names) before member `before`."""
    def make(tmp: Path, given: Inputs) -> list[str]:
        return ["verify", str(with_extensions(tmp / "ext.edgeclip", members(given.bundle), before, headers()))]
    return make


BIG_PAX = pax_record("comment", "x" * 65_000)
SPARSE_MAP = pax_record("GNU.sparse.map", "0,x")


def _arch(edit: Callable[[dict], object]):
    """The checkpoint with config.json's architecture edited; weights and their hashes untouched."""
    def make(tmp: Path, given: Inputs) -> list[str]:
        ckpt = tmp / "ckpt"
        shutil.copytree(given.checkpoint, ckpt)
        config = json.loads((ckpt / "config.json").read_text())
        edit(config["model"]["arch"])
        (ckpt / "config.json").write_text(json.dumps(config))
        return ["inspect", str(ckpt)]
    return make


def _board(old: str, new: str, verb: str = "show"):
    """A user board `evil-board` (rpi4.toml with one line changed) in $EDGECLIP_TARGETS_DIR."""
    def make(tmp: Path, given: Inputs) -> list[str]:
        boards = tmp / "boards"
        boards.mkdir()
        text = (SHIPPED_DIR / "rpi4.toml").read_text().replace('name = "rpi4"', 'name = "evil-board"')
        assert old in text
        (boards / "evil-board.toml").write_text(text.replace(old, new))
        if verb == "show":
            return ["targets", "show", "evil-board"]
        return ["build", "--target", "evil-board", "--model", str(given.checkpoint), "-o", str(tmp / "out")]
    return make


def _nested(depth: int) -> bytes:
    return b'{"schema_version": 1, "members": {}, "x": ' + b"[" * depth + b"]" * depth + b"}"


FAULTS = [
    Fault("sparse 4 GiB manifest", _sparse(4 << 30), "manifest.json is a sparse tar member"),
    Fault("sparse 1 TiB manifest", _sparse(1 << 40), "manifest.json is a sparse tar member"),
    Fault("sparse model member", _sparse_member, "'model/fp32.bin' is a sparse file"),
    Fault("schema_version true", _edit_manifest(edit_field("schema_version", True)), "schema version True is not supported"),
    Fault("member bytes -1", _edit_manifest(edit_field(("members", "model/fp32.bin", "bytes"), -1)),
          "field `members.model/fp32.bin.bytes` is -1"),
    Fault("variants a string", _edit_manifest(edit_field("variants", "x")), "field `variants` is 'x', not a list of 1 to 16"),
    Fault("a modules table in schema 5", _edit_manifest(edit_field("modules", {})), "field `modules` is replaced by `variants`"),
    Fault("min_cosine NaN", _raw_manifest(b'{"schema_version": 1, "members": {}, "min_cosine": {"ternary": NaN}}'),
          "NaN is not a number JSON allows"),
    Fault("min_cosine above 1", _edit_manifest(edit_field("min_cosine", {"ternary": 1.5})),
          "field `min_cosine.ternary` is 1.5, not a cosine in (0, 1]"),
    Fault("target null", _edit_manifest(edit_field("target", None)), "field `target` is None, not an object"),
    Fault("target null, deploy", _edit_manifest(edit_field("target", None), "deploy"), "field `target` is None"),
    Fault("member entry a string", _edit_manifest(edit_field(("members", "model/fp32.bin"), "x")),
          "field `members.model/fp32.bin` is 'x', not an object"),
    Fault("member without sha256", _edit_manifest(edit_field(("members", "model/fp32.bin", "sha256"), KeyError), "deploy"),
          "field `members.model/fp32.bin.sha256` is not 64 lowercase hex digits"),
    Fault("deeply nested JSON", _raw_manifest(_nested(100_000)), "nested more than 32 levels deep"),
    Fault("deeply nested JSON, deploy", _raw_manifest(_nested(100_000), "deploy"), "nested more than 32 levels"),
    Fault("PAX header declaring 1 TiB, before the manifest",
          _extensions(MANIFEST, lambda: extension_header(tarfile.XHDTYPE, 1 << 40)),
          f"a PAX extended header in the tar declares {1 << 40} bytes, over the limit of {MAX_EXTENSION_BYTES}"),
    Fault("global PAX header declaring 4 GiB, before a member",
          _extensions("model/fp32.bin", lambda: extension_header(tarfile.XGLTYPE, 4 << 30)),
          f"a PAX global header in the tar declares {4 << 30} bytes"),
    Fault("PAX header holding 64 KB, before a member",
          _extensions("model/fp32.bin", lambda: extension_header(tarfile.XHDTYPE, len(BIG_PAX), BIG_PAX)),
          f"a PAX extended header in the tar declares {len(BIG_PAX)} bytes, over the limit"),
    Fault("GNU long name declaring 1 TiB, before a member",
          _extensions("model/fp32.bin", lambda: extension_header(tarfile.GNUTYPE_LONGNAME, 1 << 40)),
          f"a GNU long name in the tar declares {1 << 40} bytes"),
    Fault("GNU long name of 20000 bytes, before the manifest",
          _extensions(MANIFEST, lambda: extension_header(tarfile.GNUTYPE_LONGNAME, 20_000, b"m" * 20_000)),
          "a GNU long name in the tar declares 20000 bytes"),
    Fault("PAX GNU.sparse.map not numbers",
          _extensions("model/fp32.bin", lambda: extension_header(tarfile.XHDTYPE, len(SPARSE_MAP), SPARSE_MAP)),
          "the tar is damaged (a header does not parse: invalid literal for int()"),
    Fault("5000 GNU long names in a row",
          _extensions(MANIFEST, lambda: 5000 * extension_header(tarfile.GNUTYPE_LONGNAME, 100, b"n" * 100)),
          "more than 4 extension headers (PAX, GNU long names) in a row"),
    Fault("tar cut inside the manifest", _cut_in_manifest, "the tar is damaged or truncated"),
    Fault("no runner", _edit_manifest(edit_field("runner", KeyError)), "field `runner` is None, not a member"),
    Fault("no runner, run", _edit_manifest(edit_field("runner", KeyError), "run"), "field `runner` is None"),
    Fault("runner not executable", _edit_manifest(edit_field("runner", "model/fp32.bin")), "not marked executable"),
    Fault("member inside a member", _edit_manifest(edit_field(("members", "bin/edgeclip-runner/x"),
                                                        {"sha256": "0" * 64, "bytes": 0, "executable": False})),
          "field `members.bin/edgeclip-runner/x` lies inside another member"),
    Fault("module path not a member", _edit_manifest(edit_field("variants.0.towers.model.path", "../x")),
          "field `variants.0.towers.model.path` is '../x', not a member the bundle lists"),
    Fault("10 million layers", _arch(edit_field("text_config.num_hidden_layers", 10_000_000)),
          "`model.arch.text_config.num_hidden_layers` is 10000000", max_rss_mb=TORCH_RSS_MB),
    Fault("negative hidden size", _arch(edit_field("vision_config.hidden_size", -64)),
          "`model.arch.vision_config.hidden_size` is -64", max_rss_mb=TORCH_RSS_MB),
    Fault("zero heads", _arch(edit_field("vision_config.num_attention_heads", 0)),
          "`model.arch.vision_config.num_attention_heads` is 0", max_rss_mb=TORCH_RSS_MB),
    Fault("string vocab", _arch(edit_field("text_config.vocab_size", "49408")),
          "`model.arch.text_config.vocab_size` is '49408'", max_rss_mb=TORCH_RSS_MB),
    Fault("enormous image", _arch(edit_field("vision_config.image_size", 10**30)),
          "`model.arch.vision_config.image_size` is", max_rss_mb=TORCH_RSS_MB),
    Fault("heads do not divide", _arch(edit_field("vision_config.num_attention_heads", 3)),
          "not a multiple of num_attention_heads 3", max_rss_mb=TORCH_RSS_MB),
    Fault("huge architecture, small weights", _arch(edit_field("text_config.hidden_size", 4096)),
          "the architecture does not match its weights", max_rss_mb=TORCH_RSS_MB),
    Fault("board mattr a string", _board('mattr = ["+neon"]', 'mattr = "+neon"'),
          "field `tvm.cpu.mattr` has the wrong type str"),
    Fault("board mattr without +", _board('mattr = ["+neon"]', 'mattr = ["neon"]'),
          "field `tvm.cpu.mattr` is ['neon']"),
    Fault("board cores 4e12 (float)", _board("\ncores = 4\n", "\ncores = 4e12\n"), "field `cores` has the wrong type float"),
    Fault("board cores 4 trillion", _board("\ncores = 4\n", "\ncores = 4000000000000\n"),
          "field `cores` is 4000000000000; give a positive integer up to 1024"),
    Fault("board memory negative", _board("memory_mb = 1024", "memory_mb = -1"), "field `memory_mb` is -1"),
    Fault("board mcpu shell text", _board('mcpu = "cortex-a72"', 'mcpu = "a72; rm -rf /"'),
          "field `tvm.cpu.mcpu` is 'a72; rm -rf /'"),
    Fault("board mcpu unknown to LLVM, build", _board('mcpu = "cortex-a72"', 'mcpu = "bogus"', "build"),
          "field `tvm.cpu.mcpu` is 'bogus', which LLVM does not know for aarch64-linux-gnu",
          max_rss_mb=TORCH_RSS_MB),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    from model_fixtures import make_tiny_clip_dir

    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    root = tmp_path_factory.mktemp("good")
    teacher = make_tiny_clip_dir(root / "teacher")
    _, checkpoint = ternarize_source(str(teacher), TernaryConfig(policy="q-all"), root / "ckpt")
    return Inputs(small_bundle(root / "good.edgeclip"), checkpoint)


def test_the_good_inputs_pass(inputs, tmp_path):
    """The table's controls: unbroken, each input is accepted by the same commands."""
    status, out, err, _ = run_measured(["verify", str(inputs.bundle)])
    assert status == 0 and "OK" in out, err
    status, out, err, _ = run_measured(["inspect", str(inputs.checkpoint), "--json"])
    assert status == 0 and json.loads(out)["family"] == "hf-clip", err
    make = _board('mcpu = "cortex-a72"', 'mcpu = "cortex-a72"')
    args = make(tmp_path, inputs)
    status, out, err, _ = run_measured(args, env={**os.environ, "EDGECLIP_TARGETS_DIR": str(tmp_path / "boards")})
    assert status == 0 and "cortex-a72" in out, err


def test_small_extension_headers_from_other_tar_tools_still_verify(inputs, tmp_path):
    """The bound refuses large or long runs of extension headers, not the small ones tar tools add."""
    headers = (extension_header(tarfile.XHDTYPE, len(record := pax_record("mtime", "1700000000.5")), record)
               + extension_header(tarfile.GNUTYPE_LONGNAME, 15, b"model/fp32.bin\0"))
    repacked = with_extensions(tmp_path / "repacked.edgeclip", members(inputs.bundle), "model/fp32.bin", headers)
    status, out, err, _ = run_measured(["verify", str(repacked)])
    assert status == 0 and "OK" in out, err


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(fault, inputs, tmp_path):
    args = fault.make(tmp_path, inputs)
    given = {"checkpoint": tree_state(inputs.checkpoint), "bundle": inputs.bundle.read_bytes()}
    before = tree_state(tmp_path)
    env = {**os.environ, "EDGECLIP_TARGETS_DIR": str(tmp_path / "boards")} if (tmp_path / "boards").is_dir() else None
    status, _, err, rss_mb = run_measured(args, env=env, cwd=tmp_path)
    assert status == fault.status, err
    assert fault.message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert rss_mb < fault.max_rss_mb, f"{fault.name}: peak RSS {rss_mb:.0f} MB"
    assert tree_state(tmp_path) == before  # nothing extracted, staged, written or removed
    assert tree_state(inputs.checkpoint) == given["checkpoint"] and inputs.bundle.read_bytes() == given["bundle"]
