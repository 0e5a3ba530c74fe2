"""Evaluation metrics, the built-in teacher's round trip, and the `eval` verb's JSON."""

import argparse
import json

import pytest
import torch
from model_fixtures import make_tiny_clip_dir
from training_fixtures import make_tiny_bert_dir, write_caption_folder

from edgeclip.cli.training import add_training_commands
from edgeclip.models.demo import DemoClip, new_demo_clip
from edgeclip.models.dual import DualEncoder
from edgeclip.models.hf_clip import load_hf_clip
from edgeclip.models.model_io import load_model
from edgeclip.training.data import open_pairs
from edgeclip.training.defaults import TrainConfig
from edgeclip.training.evaluate import neighbour_recall, retrieval
from edgeclip.training.teacher import train_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    add_training_commands(parser.add_subparsers(required=True))
    args = parser.parse_args([str(a) for a in argv])
    args.func(args)


def test_neighbour_recall_is_one_for_the_same_geometry_and_low_for_noise():
    embeddings = torch.nn.functional.normalize(torch.randn(200, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    assert neighbour_recall(embeddings @ rotation, embeddings) == pytest.approx(1.0)
    noise = torch.nn.functional.normalize(torch.randn(200, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    assert neighbour_recall(noise, embeddings) < 0.2


def test_retrieval_recall_grows_with_k(tmp_path):
    model = DualEncoder(load_hf_clip(make_tiny_clip_dir(tmp_path / "clip")))
    metrics = retrieval(model, open_pairs(str(write_caption_folder(tmp_path / "pairs", count=10))))
    for direction in ("image", "text"):
        r1, r5, r10 = (metrics[f"{direction}_retrieval_recall@{k}"] for k in (1, 5, 10))
        assert 0 <= r1 <= r5 <= r10 == 1.0  # 10 pairs: recall@10 covers everything


def test_demo_clip_rebuilds_from_its_config_without_minilm_files(tmp_path):
    model = new_demo_clip(seed=3)
    rebuilt = DemoClip.from_config(json.loads(json.dumps(model.config_dict())))
    rebuilt.load_state_dict(model.state_dict())
    pixels = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(rebuilt.get_image_features(pixels), model.get_image_features(pixels))
    names = dict(model.named_modules())
    assert "vision_model.encoder.layers.0.self_attn.q_proj" in names and "text_model.bert.encoder.layer.0.intermediate.dense" in names


def test_train_teacher_caches_a_loadable_teacher_and_eval_reports_top1(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECLIP_CACHE", str(tmp_path / "cache"))
    config = TrainConfig(steps=3, batch_size=32, lr=1e-3, warmup_steps=1, checkpoint_every=100)
    first = train_teacher(config=config, progress=False, eval_limit=200)
    assert not first["cached"] and 0.0 <= first["top1"] <= first["top5"] <= 1.0
    assert train_teacher(config=config, progress=False)["cached"]
    run_cli("eval", "--model", "demo", "--limit", "300", "--json", tmp_path / "demo.json")
    result = json.loads((tmp_path / "demo.json").read_text())
    assert result["task"] == "zeroshot_classification" and result["dataset"] == "fashion-mnist-test"
    assert result["top1"] == result["metrics"]["top1"] and result["metrics"]["samples"] == 300
    model, config_ = load_model(first["path"])
    assert config_["family"] == "demo-clip" and isinstance(model, DemoClip)


def test_eval_of_an_embedding_model_against_itself_is_perfect(tmp_path):
    bert = make_tiny_bert_dir(tmp_path / "bert")
    run_cli("eval", "--model", bert, "--teacher", bert, "--limit", "100", "--json", tmp_path / "self.json")
    result = json.loads((tmp_path / "self.json").read_text())
    assert result["task"] == "embedding_fidelity"
    assert result["mean_cosine"] == pytest.approx(1.0, abs=1e-5) and result["neighbour_recall_at_10"] == 1.0


def test_markdown_table_lists_each_model_with_its_task_columns():
    from edgeclip.training.report import markdown_table

    def row(top1):
        return {"task": "zeroshot_classification", "metrics": {"top1": top1, "top5": 0.99}}

    table = markdown_table([("teacher", row(0.8512)), ("PTQ", row(0.1)), ("QAT+KD", row(0.84))])
    lines = table.splitlines()
    assert lines[0] == "| model | top-1 % | top-5 % |" and len(lines) == 5
    assert lines[2] == "| teacher | 85.12 | 99.00 |"
