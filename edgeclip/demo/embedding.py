"""Demo steps 10-11: an embedding model as a product ships one. all-MiniLM-L6-v2 is ternarized
(q-all) and distilled from itself (self-taught) for a short run, scored against the float model on
the held-out fortunes, bundled for rpi4, and that bundle's own runner, on the emulated board,
indexes a corpus of fortunes and answers held-out queries; the answers are scored against exact
search on the float teacher's embeddings and on the student's own.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from edgeclip.demo import bundles, cache
from edgeclip.demo.plan import Plan
from edgeclip.demo.steps import Skip
from edgeclip.errors import ToolchainError

TEACHER = "minilm"
SEQ_LEN = 32  # tokens a sentence: the fortunes' median is far below; longer costs emulated minutes
INDEX = "sentences.index"


def student(plan: Plan, out: Path) -> tuple[Path, dict, str]:
    """(ternary MiniLM at `out`, its fidelity to the float model on the held-out fortunes, note)."""
    from edgeclip.quant import TernaryConfig
    from edgeclip.training.student import StudentSpec, evaluate, train_student

    spec = StudentSpec(teacher=TEACHER, data="fortunes", quant=TernaryConfig(policy="q-all"))
    entry_key = cache.key("training", "sentence-student", asdict(spec), plan.sentence.to_dict(),
                          plan.fidelity_sentences, cache.tree_digest(Path(__file__)))

    def make(folder: Path) -> None:
        summary = train_student(spec, plan.sentence, folder / "student", progress=False)
        shutil.rmtree(folder / "student.train", ignore_errors=True)  # resumable state: large, not needed after
        metrics = evaluate(str(folder / "student"), "fortunes", TEACHER, plan.fidelity_sentences)["metrics"]
        (folder / "result.json").write_text(json.dumps({"summary": summary, "fidelity": metrics}, default=str) + "\n")

    folder, hit = cache.cached("sentence-students", entry_key, make)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder / "student", out)
    result = json.loads((folder / "result.json").read_text())
    fidelity = result["fidelity"]
    took = "cached" if hit else f"in {result['summary']['seconds_this_run']:.0f} s"
    note = (f"{plan.sentence.steps} steps of self-taught distillation, {took}; held-out cosine "
            f"{fidelity['mean_cosine']:.3f}, neighbour recall@10 {fidelity['neighbour_recall_at_10']:.3f}")
    return out, fidelity, note


def build(checkpoint: Path, run: Path) -> tuple[Path, dict]:
    """(the rpi4 bundle of the student, its sizes beside the float model's weights)."""
    from edgeclip.formats.bundle import payload_bytes, read_manifest
    from edgeclip.pipeline import inspect_checkpoint

    # Batch 1 only: under qemu-user a larger batch saves nothing (the float remainder is software).
    bundle, _ = bundles.build(checkpoint, bundles.DEVICE_TARGET, None, run / "bundles", seq_len=SEQ_LEN, batches=(1,))
    fp32 = inspect_checkpoint(checkpoint)["fp32_size_bytes"]
    ternary = payload_bytes(read_manifest(bundle), "ternary")
    return bundle, {"bundle_bytes": bundle.stat().st_size, "ternary_payload_bytes": ternary,
                    "fp32_weights_bytes": fp32, "storage_saved": 1 - ternary / fp32}


def search_on_board(plan: Plan, bundle: Path, checkpoint: Path, run: Path) -> dict:
    """Index `plan.index_sentences` fortunes and search `plan.index_queries` held-out ones with the
    bundle's runner under qemu; recall@10 against exact search on the teacher and on the student."""
    from edgeclip.bundle.index_host import exact_top_k, recall_at_k
    from edgeclip.bundle.runner_modes import run_mode
    from edgeclip.formats.bundle import read_manifest
    from edgeclip.native.toolchain import emulator_command
    from edgeclip.training.corpus import load_fortunes

    try:
        emulator_command("aarch64")
    except ToolchainError as err:
        raise Skip(str(err)) from err
    fortunes = load_fortunes()
    corpus, queries = fortunes.train[:plan.index_sentences], fortunes.held_out[:plan.index_queries]
    folder = run / "search"
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("corpus.txt", corpus), ("queries.txt", queries)):
        (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    threads = ["--threads", str(min(os.cpu_count() or 1, 4))]  # the board's 4 cores, or the host's fewer
    run_mode(bundle, "index", [*threads, "--text-file", str(folder / "corpus.txt"), "--out", str(folder / INDEX)],
             emulate=True, out=io.StringIO())
    run_mode(bundle, "embed", [*threads, "--text-file", str(folder / "queries.txt"), "--out",
                               str(folder / "queries.npy")], emulate=True, out=io.StringIO())
    answers = io.StringIO()
    run_mode(bundle, "search", [*threads, "--index", str(folder / INDEX), "--vector", str(folder / "queries.npy"),
                                "--k", "10"], emulate=True, out=answers)
    found = [[hit["id"] for hit in json.loads(line)["results"]] for line in answers.getvalue().splitlines()]
    device_queries = np.load(folder / "queries.npy")
    manifest = read_manifest(bundle)
    recall, cosines = {}, None
    for name, model in (("teacher", TEACHER), ("student", str(checkpoint))):
        corpus_emb, query_emb = (_torch_embeddings(model, manifest, texts) for texts in (corpus, queries))
        recall[name] = recall_at_k(found, exact_top_k(corpus_emb, query_emb, 10))
        if name == "student":
            cosines = np.sum(device_queries.astype(np.float64) * query_emb, axis=1)
    first = json.loads(answers.getvalue().splitlines()[0])["results"][0]
    return {"corpus": len(corpus), "queries": len(queries), "seq_len": SEQ_LEN, "index_bytes": (folder / INDEX).stat().st_size,
            "recall_at_10_vs_teacher": recall["teacher"], "recall_at_10_vs_student": recall["student"],
            "device_vs_student_cosine_min": float(cosines.min()),
            "example": {"query": queries[0], "top": corpus[first["id"]], "score": first["score"]}}


def _torch_embeddings(model_spec: str, manifest: dict, texts: list[str]) -> np.ndarray:
    """Unit sentence embeddings of a float or ternary MiniLM in PyTorch, tokenized by the bundle's
    manifest fields as its runner tokenizes."""
    import torch

    from edgeclip.bundle.model_info import manifest_family
    from edgeclip.models.sources import open_model

    model, _ = open_model(model_spec)
    found = manifest_family(manifest)
    tokenize = found.text.tokenizer(found.text.installed_vocab(), manifest["tokenizer"])
    with torch.no_grad():
        rows = np.concatenate([model(*map(torch.from_numpy, tokenize(text))).numpy() for text in texts])
    rows = rows.astype(np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
