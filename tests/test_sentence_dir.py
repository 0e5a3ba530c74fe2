"""Local sentence-transformers directories: their pooling config and casing become the checkpoint's
`sentence` head, the head round-trips through ternarize, the [CLS] pooling matches
sentence-transformers itself, and configs edgeclip cannot honour are refused with one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import BertConfig, BertModel

from edgeclip.errors import BundleError, ModelError
from edgeclip.models.minilm import minilm_path
from edgeclip.models.sentence_dir import pooling_of, sentence_head
from edgeclip.models.sources import load_source

SENTENCES = ["A cat sits on the mat.", "Stock markets fell sharply on Monday.", "I like green tea", "Hello!"]


def _sentence_dir(root, pooling: dict, vocab: bytes | None = None):
    """A small random BERT saved as sentence-transformers saves one (Transformer, Pooling, Normalize),
    with all-MiniLM-L6-v2's tokenizer files."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(root)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, root / name)
    if vocab is not None:
        (root / "vocab.txt").write_bytes(vocab)
        (root / "tokenizer.json").unlink()
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return root


CLS = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}


def test_cls_pooling_is_read_and_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    directory = _sentence_dir(tmp_path / "cls", CLS)
    model, found, arch = load_source(str(directory))
    assert model.head["pooling"] == "cls" and arch["sentence"]["pooling"] == "cls" and found.name == "minilm"
    assert found.build(arch).head == model.head  # the head survives a checkpoint's rebuild
    reference = SentenceTransformer(str(directory), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    ours = model.encode(SENTENCES, _tokenizer(directory))
    cosine = torch.nn.functional.cosine_similarity(ours, reference.float()).min().item()
    assert cosine > 0.9999, cosine


def _tokenizer(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, local_files_only=True)


def test_minilm_pools_by_mean_and_lowercases():
    assert sentence_head(minilm_path())["pooling"] == "mean"
    assert sentence_head(minilm_path())["lowercase"] is True


@pytest.mark.parametrize("config, problem", [
    ({"pooling_mode_max_tokens": True}, "pooling_mode_max_tokens"),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, "exactly one"),
    ({}, "none"),
])
def test_pooling_edgeclip_cannot_compile_is_refused(tmp_path, config, problem):
    directory = _sentence_dir(tmp_path / "bad", config)
    with pytest.raises(ModelError, match=problem):
        pooling_of(directory)


def test_a_plain_bert_directory_pools_by_mean(tmp_path):
    directory = _sentence_dir(tmp_path / "plain", CLS)
    (directory / "modules.json").unlink()
    assert pooling_of(directory) == "mean"


def test_a_pooling_path_outside_the_directory_is_refused(tmp_path):
    directory = _sentence_dir(tmp_path / "escape", CLS)
    modules = json.loads((directory / "modules.json").read_text())
    modules[1]["path"] = "../../etc"
    (directory / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match="outside the model directory"):
        pooling_of(directory)


def test_a_forged_head_in_a_checkpoint_arch_is_refused():
    from edgeclip.models.families import family

    with pytest.raises(ModelError, match="pooling of mean, cls"):
        family("minilm").build({"hidden_size": 32, "sentence": {"pooling": "max"}})


def test_a_model_with_another_vocabulary_is_refused_before_compiling(tmp_path):
    from edgeclip.bundle.build import build_bundle
    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import TernaryConfig

    vocab = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"tok{i}" for i in range(30517))]) + "\n"
    directory = _sentence_dir(tmp_path / "other-vocab", CLS, vocab.encode())
    _, checkpoint = ternarize_source(str(directory), TernaryConfig(), tmp_path / "ckpt")
    with pytest.raises(BundleError, match="vocab.txt is not all-MiniLM-L6-v2's"):
        build_bundle(checkpoint, "x86-64", tmp_path / "out")
