"""On-device search on a real host bundle (tiny CLIP, text tower): `edgeclip index` / `search` over
2,000 fortunes sentences reach recall@10 >= 0.98 against exact numpy search on the bundle's own
fp32 embeddings; the runner's index equals the host writer's byte for byte (same quantization);
text queries answer as their embedding does; damaged indexes and one from another model are
refused in one line; the aarch64 runner under qemu (with and without sdot) returns the same
top-k and scores as the host runner on the same index; and serve's search op answers as the mode."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.bundle.index_host import build_index, exact_top_k, recall_at_k
from edgeclip.cli import main
from edgeclip.errors import ToolchainError
from edgeclip.formats import index as index_format
from edgeclip.formats.bundle import variant_towers
from edgeclip.native import toolchain
from edgeclip.training.corpus import load_fortunes

CORPUS = 2000
QUERIES = 100


@pytest.fixture(scope="module")
def bundle(tiny_clip_ternary):
    return build_bundle(tiny_clip_ternary, "x86-64-v3", tiny_clip_ternary.parent / "search-bundles", towers=("text",))


@pytest.fixture(scope="module")
def folder(bundle, tmp_path_factory):
    with local.extracted(bundle) as (extracted, _):
        copy = tmp_path_factory.mktemp("search") / "bundle"
        shutil.copytree(extracted, copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """(corpus file, queries file): 2,000 training sentences and 100 held-out ones, one a line."""
    fortunes = load_fortunes()
    root = tmp_path_factory.mktemp("texts")
    (root / "corpus.txt").write_text("\n".join(fortunes.train[:CORPUS]) + "\n", encoding="utf-8")
    (root / "queries.txt").write_text("\n".join(fortunes.held_out[:QUERIES]) + "\n", encoding="utf-8")
    return root / "corpus.txt", root / "queries.txt"


def runner(folder: Path, *args, code: int = 0, prefix=()) -> subprocess.CompletedProcess:
    done = subprocess.run([*prefix, str(folder / "bin" / "edgeclip-runner"), *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == code, done.stderr
    return done


def embed(folder: Path, text_file: Path, out: Path) -> np.ndarray:
    runner(folder, "embed", "--bundle", folder, "--text-file", text_file, "--out", out)
    return np.load(out)


def hits(done) -> list[list[dict]]:
    return [json.loads(line)["results"] for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def built(bundle, folder, texts, tmp_path_factory):
    """Both encodings indexed by `edgeclip index`, and the fp32 embeddings of corpus and queries."""
    root = tmp_path_factory.mktemp("indexes")
    corpus, queries = texts
    paths = {}
    for encoding in ("int8", "binary"):
        paths[encoding] = root / f"{encoding}.index"
        assert main(["index", str(bundle), "--text-file", str(corpus), "--out", str(paths[encoding]),
                     "--encoding", encoding]) == 0
    return paths, embed(folder, corpus, root / "corpus.npy"), embed(folder, queries, root / "queries.npy"), root


def test_search_reaches_recall_against_exact_fp32_search(folder, built):
    """The default int8 index reaches the bar; a binary index's first pass needs far more than the
    tiny model's 32 sign bits (bench/search.py measures it at 384), so here it must at least give
    exactly the int8 answer when every row is re-scored."""
    paths, corpus, queries, root = built
    exact = exact_top_k(corpus, queries, 10)
    int8 = hits(runner(folder, "search", "--index", paths["int8"], "--vector", root / "queries.npy", "--k", 10))
    recall = recall_at_k([[h["id"] for h in row] for row in int8], exact)
    assert recall >= 0.98, recall
    every = [runner(folder, "search", "--index", paths[e], "--vector", root / "queries.npy", "--rerank", CORPUS)
             for e in ("int8", "binary")]
    assert hits(every[0]) == hits(every[1])
    scores = np.array([[h["score"] for h in row] for row in int8])
    truth = np.take_along_axis(queries @ corpus.T, np.array([[h["id"] for h in row] for row in int8]), axis=1)
    assert np.abs(scores - truth).max() < 0.01  # the fine pass: the cosine within the codes' rounding


def test_runner_index_equals_host_writer_and_names_its_model(folder, built, texts):
    paths, corpus, _, _ = built
    lines = texts[0].read_text(encoding="utf-8").splitlines()
    info = index_format.parse(paths["binary"].read_bytes())
    manifest = json.loads((folder / "manifest.json").read_text())
    module = variant_towers(manifest)["ternary"]["text"]["path"]
    assert info.model == {"bundle": manifest["name"], "tower": "text", "variant": "ternary",
                          "module_sha256": manifest["members"][module]["sha256"]}
    assert info.items == tuple(lines) and info.lines == tuple(range(1, CORPUS + 1))
    for encoding, path in paths.items():
        assert path.read_bytes() == build_index(corpus, lines, info.model, encoding=encoding)
    assert info.vector_bytes() / (CORPUS * corpus.shape[1] * 4) <= 0.45  # 32 dims: 4 + 32 + 8 bytes a row


def test_text_query_answers_as_its_embedding(bundle, folder, built, texts, capsys):
    paths, _, queries, root = built
    sentence = texts[1].read_text(encoding="utf-8").splitlines()[3]
    capsys.readouterr()
    assert main(["search", str(bundle), "--index", str(paths["binary"]), "--query", sentence, "--k", "5"]) == 0
    row = json.loads(capsys.readouterr().out)
    np.save(root / "one.npy", queries[3:4])
    by_vector = hits(runner(folder, "search", "--index", paths["binary"], "--vector", root / "one.npy", "--k", 5))[0]
    assert row["query"] == sentence and row["results"] == by_vector and row["ms"] >= 0
    assert set(by_vector[0]) == {"id", "line", "text", "score"}


def _damaged(data: bytes, how: str) -> bytes:
    out = bytearray(data)
    if how == "flipped byte":
        out[len(out) // 2] ^= 0x40
    elif how == "truncated":
        del out[-100:]
    elif how == "wrong version":
        struct.pack_into("<I", out, 8, 9)
    elif how == "huge count":
        struct.pack_into("<I", out, 16, 2**32 - 1)
        struct.pack_into("<I", out, 28, zlib.crc32(bytes(out[index_format.PREFIX:])))
    return bytes(out)


@pytest.mark.parametrize(("how", "says"), [("flipped byte", "CRC-32 does not match"), ("truncated", "truncated"),
                                           ("wrong version", "format version 9"), ("huge count", "claims 4294967295")])
def test_damaged_index_is_refused_in_one_line(folder, built, tmp_path, how, says):
    paths, _, _, root = built
    bad = tmp_path / "bad.index"
    bad.write_bytes(_damaged(paths["int8"].read_bytes(), how))
    done = runner(folder, "search", "--index", bad, "--vector", root / "queries.npy", code=3)
    assert says in done.stderr and done.stderr.count("\n") == 1 and "rebuild it" in done.stderr
    with pytest.raises(index_format.IndexFormatError, match=says.split()[0]):
        index_format.parse(bad.read_bytes())


def test_index_from_another_model_is_refused(bundle, folder, built, texts, tmp_path, capsys):
    paths, corpus, _, _ = built
    info = index_format.parse(paths["int8"].read_bytes())
    other = tmp_path / "other.index"
    other.write_bytes(build_index(corpus, list(info.items), {**info.model, "module_sha256": "b" * 64}))
    done = runner(folder, "search", "--bundle", folder, "--index", other, "--query", "a cat", code=3)
    assert "was built by bundle" in done.stderr and "rebuild the index with this bundle" in done.stderr
    assert done.stderr.count("\n") == 1
    assert main(["search", str(bundle), "--index", str(other), "--query", "a cat"]) == 1
    assert "was built by bundle" in capsys.readouterr().err


def _aarch64_runner(dest: Path) -> list[str]:
    try:
        prefix = toolchain.emulator_command("aarch64")
        binary = toolchain.standalone_runner(dest, "aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu",
                                             "manylinux_2_28_aarch64")
    except ToolchainError as err:
        pytest.skip(f"needs the aarch64 cross tool chain and qemu-user: {err}")
    return [*prefix, str(binary)]


@pytest.mark.parametrize("cpu", ["cortex-a72", "max"])  # NEON without sdot (Pi 4), and with it
def test_aarch64_search_under_qemu_equals_the_host_runner(folder, built, tmp_path_factory, monkeypatch, cpu):
    paths, _, _, root = built
    command = _aarch64_runner(tmp_path_factory.getbasetemp() / "aarch64-runner")
    monkeypatch.setenv("QEMU_CPU", cpu)
    np.save(root / "few.npy", np.load(root / "queries.npy")[:20])
    for path in paths.values():
        args = ["search", "--index", str(path), "--vector", str(root / "few.npy"), "--k", "10"]
        host = hits(runner(folder, *args))
        device = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)
        assert device.returncode == 0, device.stderr
        assert hits(device) == host


def test_serve_answers_search_requests_as_the_search_mode(folder, built, texts):
    paths, _, _, _ = built
    sentence = texts[1].read_text(encoding="utf-8").splitlines()[5]
    index = str(paths["int8"])
    requests = [{"id": 1, "op": "search", "index": index, "text": sentence, "k": 3},
                {"id": 2, "op": "search", "index": index, "text": sentence, "k": 3},  # the index kept open
                {"id": 3, "op": "search", "index": index, "text": sentence, "top": 2},
                {"id": 4, "op": "search", "index": index + ".missing", "text": sentence}]
    done = subprocess.run([str(folder / "bin" / "edgeclip-runner"), "serve", "--bundle", str(folder), "--threads", "1"],
                          input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    direct = json.loads(runner(folder, "search", "--bundle", folder, "--index", index, "--query", sentence, "--k", 3).stdout)
    del direct["ms"]
    assert replies[0] == {"id": 1, "result": direct} and replies[1] == {"id": 2, "result": direct}
    assert "unknown field \"top\" for op search" in replies[2]["error"]
    assert "cannot open the index" in replies[3]["error"]
