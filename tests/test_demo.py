"""`edgeclip demo --quick` end to end, as a user runs it: a subprocess, then the report it wrote;
and the two pieces of the demo that compute something of their own (its cache, class retrieval).

The quick demo trains a tiny teacher and student, evaluates, builds the host and rpi4 bundles,
classifies real images, profiles, and ternarizes MiniLM whose rpi4 bundle indexes and searches fortunes
on the emulated board; its expensive results are cached by their inputs under
$EDGECLIP_CACHE/demo, so later runs of this test reuse them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgeclip.demo import cache
from edgeclip.demo.accuracy import class_retrieval
from edgeclip.training.data import fashion_mnist_dir


def test_cache_entry_appears_only_when_complete_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLIP_CACHE", str(tmp_path))
    entry = cache.key("training", "unit-test", {"steps": 3})
    assert entry != cache.key("training", "unit-test", {"steps": 4}) != cache.key("bundle", "unit-test", {"steps": 3})

    def interrupted(folder):
        (folder / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached("kind", entry, interrupted)
    assert not (tmp_path / "demo" / "kind" / entry).exists()
    assert list((tmp_path / "demo" / "kind").iterdir()) == []  # no staging folder left behind
    made = []
    folder, hit = cache.cached("kind", entry, lambda f: made.append((f / "done.txt").write_text("ok")))
    again, hit_again = cache.cached("kind", entry, lambda f: made.append("twice"))
    assert (hit, hit_again, len(made)) == (False, True, 1) and again == folder
    assert (folder / "done.txt").read_text() == "ok"


def test_class_retrieval_scores_rankings():
    labels = torch.tensor([0, 0, 1, 1, 1])
    perfect = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    assert class_retrieval(perfect, labels, k=2) == {"t2i_precision@2": 1.0, "t2i_map": 1.0}
    worst = -perfect
    scores = class_retrieval(worst, labels, k=2)
    assert scores["t2i_precision@2"] == 0.0
    # class 0 found at ranks 4, 5: AP = (1/4 + 2/5) / 2; class 1 at ranks 3, 4, 5: (1/3 + 2/4 + 3/5) / 3
    assert scores["t2i_map"] == pytest.approx(((1 / 4 + 2 / 5) / 2 + (1 / 3 + 2 / 4 + 3 / 5) / 3) / 2)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    if not (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    out = tmp_path_factory.mktemp("demo") / "run"
    done = subprocess.run([sys.executable, "-m", "edgeclip.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    return out, done


@pytest.mark.slow
def test_quick_demo_succeeds_and_accounts_for_every_step(quick_demo):
    out, done = quick_demo
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "demo.json").read_text())
    assert record["plan"] == "quick" and len(record["steps"]) == 11
    for step in record["steps"]:
        assert step["status"] in ("done", "skipped"), step
        assert step["status"] == "done" or step["note"], f"{step['title']} skipped without a reason"
        assert f"[{record['steps'].index(step) + 1}/11] {step['title']}" in done.stdout
    assert [s["status"] for s in record["steps"][:3]] == ["done"] * 3  # teacher, student, evaluation


@pytest.mark.slow
def test_report_has_the_accuracy_table(quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    for label in ("teacher (fp32)", "PTQ (q-all, no training)", "student (q-all, QAT + KD)"):
        row = re.search(rf"^\| {re.escape(label)} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", report, re.M)
        assert row, f"no accuracy row for {label}"
        top1, top5 = float(row[1]), float(row[2])
        assert 0 <= top1 <= top5 <= 100
    record = json.loads((out / "demo.json").read_text())
    assert record["accuracy"]["teacher"]["top1"] > 0.2  # ten classes: chance is 0.1
    assert (out / "accuracy.png").stat().st_size > 0


@pytest.mark.slow
def test_report_has_bundle_sizes_against_fp32(quick_demo):
    out, _ = quick_demo
    record = json.loads((out / "demo.json").read_text())
    report = (out / "report.md").read_text()
    assert record["sizes"]["student_checkpoint_bytes"] < record["sizes"]["fp32_weights_bytes"] / 8
    built = [s for s in record["steps"][3:5] if s["status"] == "done"]
    assert len(built) == len(record["bundles"]) >= 1, "the host bundle is always buildable here"
    for target, sizes in record["bundles"].items():
        assert (out / sizes["path"]).is_file()
        assert sizes["payload_smaller_than_fp32_weights"] > 8  # trits at 1.6-2 bits vs 32
        assert re.search(rf"^\| {re.escape(target)} bundle: ternary payload .* \| [\d.]+ \| [\d.]+ \|$", report, re.M)


@pytest.mark.slow
def test_report_has_the_profiles_or_why_not(quick_demo):
    out, done = quick_demo
    record = json.loads((out / "demo.json").read_text())
    report = (out / "report.md").read_text()
    host = record["profiles"]["host"]["result"]["modules"]["ternary"]
    assert host["output_ok"] and host["latency_ms"]["p50"] > 0
    assert "### host: " in report
    device_step = record["steps"][7]
    assert "emulated aarch64, correctness only" in report
    if device_step["status"] == "done":
        device = record["profiles"]["device"]
        assert device["mode"] and all(m["output_ok"] for m in device["result"]["modules"].values())
        assert "Ran as: " in report
    else:
        assert "Skipped: " in report and device_step["note"] in done.stdout


@pytest.mark.slow
def test_predictions_come_from_the_host_bundle_and_match_pytorch(quick_demo):
    out, _ = quick_demo
    rows = json.loads((out / "demo.json").read_text())["predictions"]
    fashion = [r for r in rows if r["source"] == "fashion-mnist"]
    assert fashion and all(r["truth"] for r in fashion)
    agree = sum(r["bundle"] == r["torch"] for r in rows)
    assert agree >= len(rows) - 1, rows  # int8 activations may flip one near-tie, not more
    assert (out / "predictions.png").stat().st_size > 0


@pytest.mark.slow
def test_the_device_runtime_classifies_and_embeds_on_the_emulated_board(quick_demo):
    out, done = quick_demo
    record = json.loads((out / "demo.json").read_text())
    report = (out / "report.md").read_text()
    assert record["steps"][8]["status"] == "done", record["steps"][8]  # CI has qemu-user
    used, predictions = record["on_device"], record["predictions"]
    assert [r["name"] for r in used["classify"]] == [r["name"] for r in predictions]
    assert used["agree"] == sum(r["device"] == r["torch"] for r in used["classify"]) >= len(predictions) - 1
    assert all(0 < r["device_p"] <= 1 for r in used["classify"])
    fashion = [r for r in predictions if r["source"] == "fashion-mnist"]
    embeddings = np.load(out / used["embed"]["file"])
    assert embeddings.shape == (len(fashion), used["embed"]["dim"]) == (used["embed"]["count"], used["embed"]["dim"])
    assert used["embed"]["cosine_min"] >= 0.99, used["embed"]
    assert f"agree on {used['agree']} of {len(predictions)} images" in report


@pytest.mark.slow
def test_the_embedding_section_searches_on_the_emulated_board(quick_demo):
    """Ternary MiniLM, its rpi4 bundle, and the board's own index and search of real fortunes."""
    out, _ = quick_demo
    record = json.loads((out / "demo.json").read_text())
    assert [s["status"] for s in record["steps"][9:]] == ["done", "done"], record["steps"][9:]
    found = record["embedding"]
    assert found["fidelity"]["samples"] == 50 and 0.5 < found["fidelity"]["mean_cosine"] <= 1
    assert 0.8 < found["sizes"]["storage_saved"] < 1  # ternary payload against the fp32 weights
    search = found["search"]
    assert (search["corpus"], search["queries"]) == (40, 5) and (out / "search" / "sentences.index").is_file()
    # The board's int8 search over its own embeddings finds what exact search on the PyTorch student finds.
    assert search["recall_at_10_vs_student"] >= 0.9 and search["device_vs_student_cosine_min"] >= 0.99, search
    assert 0 < search["recall_at_10_vs_teacher"] <= 1
    report = (out / "report.md").read_text()
    assert "## Embedding model: ternary all-MiniLM-L6-v2" in report
    assert f"{search['recall_at_10_vs_teacher']:.3f}" in report


@pytest.mark.slow
def test_the_console_shows_no_library_warnings_and_the_log_keeps_them(quick_demo):
    out, done = quick_demo
    noise = re.compile(r"Warning|warnings\.warn|Loading weights|pre-processing|\[\d\d:\d\d:\d\d\] /")
    for line in (done.stdout + done.stderr).replace("\r", "\n").splitlines():
        assert not noise.search(line), line
    assert (out / "log.txt").is_file()
