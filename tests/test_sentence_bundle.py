"""A real sentence-encoder bundle: all-MiniLM-L6-v2 ternarized (q-all), built with a 32-token
context for rpi4 (its runner and towers run under qemu-aarch64, as on the board) and for this
x86-64 host. The device's own WordPiece, pooling and normalisation give embeddings matching the
PyTorch student on real sentences, and its on-device search over 2,000 sentences finds what exact
search on the student's own embeddings finds; the bundle carries no image tower, and asking it to classify
says why not in one line. Each bundle is built once for the module (about a minute each)."""

from __future__ import annotations

import json
import platform
import subprocess

import numpy as np
import pytest
import torch

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.bundle.index_host import exact_top_k, recall_at_k
from edgeclip.bundle.model_info import manifest_family
from edgeclip.cli import main
from edgeclip.formats.bundle import variant_towers, verify_bundle
from edgeclip.models.model_io import load_model
from edgeclip.training.corpus import load_fortunes

pytestmark = [pytest.mark.slow, pytest.mark.heavy]
SEQ_LEN = 32
MIN_COSINE = 0.995
CORPUS, QUERIES = 2000, 50


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    _, checkpoint = ternarize_source("minilm", TernaryConfig(policy="q-all"), tmp_path_factory.mktemp("st") / "minilm")
    return checkpoint


@pytest.fixture(scope="module")
def rpi4_bundle(student):
    from edgeclip.errors import ToolchainError
    from edgeclip.native.toolchain import require_compiler
    from edgeclip.targets import load_target

    try:
        require_compiler(*load_target("rpi4").compiler)
    except ToolchainError as err:
        pytest.skip(f"needs the aarch64 cross compiler: {err}")
    return build_bundle(student, "rpi4", student.parent / "rpi4", seq_len=SEQ_LEN)


@pytest.fixture(scope="module")
def host_bundle(student):
    if platform.machine() != "x86_64":
        pytest.skip(f"the host bundle is built for x86-64; this machine is {platform.machine()}")
    return build_bundle(student, "x86-64-v3", student.parent / "host", baseline="fp32", seq_len=SEQ_LEN)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """32 real held-out fortunes, every k-th (a fixed rule)."""
    held_out = load_fortunes().held_out
    return held_out[:: max(1, len(held_out) // 32)][:32]


def _pytorch(checkpoint, manifest: dict, texts: list[str]) -> np.ndarray:
    """The student's embeddings, tokenized on the host by the bundle's manifest fields."""
    model, _ = load_model(checkpoint)
    found = manifest_family(manifest)
    tokenize = found.text.tokenizer(found.text.installed_vocab(), manifest["tokenizer"])
    with torch.no_grad():
        return np.concatenate([model(*map(torch.from_numpy, tokenize(text))).numpy() for text in texts])


def _worst_cosine(got: np.ndarray, expected: np.ndarray) -> float:
    got = got / np.linalg.norm(got, axis=1, keepdims=True)
    return float((got * expected).sum(axis=1).min())


def test_the_rpi4_board_embeds_like_the_pytorch_student(rpi4_bundle, student, sentences, tmp_path, record_property):
    text_file = tmp_path / "sentences.txt"
    text_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    with local.extracted(rpi4_bundle) as (folder, manifest):
        command = local.runner_command(folder, manifest, emulate=True)
        # One thread: the board's 4 worker threads, emulated on a shared host, spin for minutes.
        done = subprocess.run([*command, "embed", "--bundle", str(folder), "--threads", "1", "--text-file", str(text_file)],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        refused = subprocess.run([*command, "classify", "--bundle", str(folder), "--image", str(text_file),
                                  "--labels", "a,b"], capture_output=True, text=True, timeout=300)
    assert [a["text"] for a in answers] == sentences
    got = np.array([a["embedding"] for a in answers], dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    worst = _worst_cosine(got, _pytorch(student, manifest, sentences))
    record_property("rpi4_worst_cosine", round(worst, 5))
    assert worst >= MIN_COSINE, f"worst cosine {worst:.5f} over {len(sentences)} sentences"
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    assert "no image tower: it embeds text only" in refused.stderr


def test_the_rpi4_board_searches_2000_sentences_like_exact_search_on_the_student(rpi4_bundle, student, tmp_path,
                                                                                 record_property):
    """The board indexes a corpus and answers queries with its own embeddings (int8 index, its
    runner under qemu); the truth is exact search over the PyTorch student's float embeddings."""
    fortunes = load_fortunes()
    corpus, queries = fortunes.train[:CORPUS], fortunes.held_out[:QUERIES]
    (tmp_path / "corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (tmp_path / "queries.txt").write_text("\n".join(queries) + "\n", encoding="utf-8")
    with local.extracted(rpi4_bundle) as (folder, manifest):
        board = local.runner_command(folder, manifest, emulate=True)
        for args in (["index", "--text-file", tmp_path / "corpus.txt", "--out", tmp_path / "corpus.index"],
                     ["embed", "--text-file", tmp_path / "queries.txt", "--out", tmp_path / "queries.npy"]):
            done = subprocess.run([*board, *map(str, args), "--bundle", str(folder), "--threads", "1"],
                                  capture_output=True, text=True, timeout=1500)
            assert done.returncode == 0, done.stderr
        done = subprocess.run([*board, "search", "--bundle", str(folder), "--index", str(tmp_path / "corpus.index"),
                               "--vector", str(tmp_path / "queries.npy"), "--k", "10"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        found = [[hit["id"] for hit in json.loads(line)["results"]] for line in done.stdout.splitlines()]
        truth = exact_top_k(_pytorch(student, manifest, corpus), _pytorch(student, manifest, queries), 10)
    recall = recall_at_k(found, truth)
    record_property("rpi4_search_recall_at_10", round(recall, 4))
    assert len(found) == QUERIES and recall >= 0.98, recall


def test_a_sentence_bundle_is_text_only(rpi4_bundle):
    manifest = verify_bundle(rpi4_bundle)
    assert list(variant_towers(manifest)["ternary"]) == ["text"] and list(manifest["reference"]) == ["text"]
    assert not [m for m in manifest["members"] if "image" in m] and "preprocessing" not in manifest
    assert manifest["model"]["family"] == "minilm" and manifest["model"]["arch"]["sentence"]["pooling"] == "mean"
    tokenizer = manifest["tokenizer"]
    assert (tokenizer["kind"], tokenizer["context_length"], tokenizer["lowercase"]) == ("wordpiece", SEQ_LEN, True)
    assert tokenizer["inputs"] == ["input_ids", "attention_mask"]


def test_the_host_bundle_embeds_and_profiles_both_variants(host_bundle, student, sentences, tmp_path, capsys):
    text_file = tmp_path / "sentences.txt"
    text_file.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    expected = _pytorch(student, verify_bundle(host_bundle), sentences)
    for variant in ("ternary", "fp32"):
        out = tmp_path / f"{variant}.npy"
        assert main(["embed", str(host_bundle), "--text-file", str(text_file), "--variant", variant,
                     "--out", str(out)]) == 0
        worst = _worst_cosine(np.load(out), expected)
        assert worst >= MIN_COSINE, f"{variant}: worst cosine {worst:.5f}"
    capsys.readouterr()
    assert main(["run", str(host_bundle), "--runs", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["module"] == "ternary" and report["baseline"]["module"] == "fp32"
    for row in (report, report["baseline"]):
        assert row["towers"]["text"]["output_shape"] == [1, 384] and row["cosine_to_reference"] >= MIN_COSINE
