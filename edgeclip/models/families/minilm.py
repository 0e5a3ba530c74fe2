"""BERT-family sentence encoders (all-MiniLM-L6-v2 and local sentence-transformers directories):
one text tower with the model's own pooling (mean or [CLS]) and L2 normalisation inside the graph
(`edgeclip.models.minilm.SentenceEncoder`). The arch is BERT's config plus a "sentence" table
(`edgeclip.models.sentence_dir.sentence_head`): pooling, casing and the vocabulary's sha256."""

from __future__ import annotations

import dataclasses
import hashlib

from transformers import BertConfig, BertModel

from edgeclip.errors import ModelError
from edgeclip.models.families.base import SENTENCE_ENCODER, ModelFamily
from edgeclip.models.minilm import SentenceEncoder
from edgeclip.models.sentence_dir import POOLINGS
from edgeclip.models.towers import Tower, text_inputs
from edgeclip.models.wordpiece import MINILM_TEXT, minilm_vocab

SEQ_LEN = 128
HEAD = "sentence"


def _towers(model: SentenceEncoder, batch: int = 1, seq_len: int | None = None) -> dict[str, Tower]:
    return {"text": Tower("text", model.eval(), text_inputs(batch, seq_len or SEQ_LEN))}


def _build(arch: dict) -> SentenceEncoder:
    head = arch.get(HEAD)
    if head is not None and not (isinstance(head, dict) and head.get("pooling") in POOLINGS):
        raise ModelError(f"the checkpoint's arch.{HEAD} is {str(head)[:60]}, not a table with a pooling of "
                         f"{', '.join(POOLINGS)}; re-ternarize the model")
    bert = {key: value for key, value in arch.items() if key != HEAD}
    return SentenceEncoder(BertModel(BertConfig.from_dict(bert)), head).eval()


def _text_fields(arch: dict) -> dict:
    """Casing from the model's tokenizer config; the bundled vocabulary must be the model's own."""
    head = arch.get(HEAD) or {}
    recorded = head.get("vocab_sha256")
    if recorded is not None and recorded != hashlib.sha256(minilm_vocab().read_bytes()).hexdigest():
        raise ModelError("this sentence encoder's vocab.txt is not all-MiniLM-L6-v2's (bert-base-uncased) WordPiece "
                         "vocabulary, the only one edgeclip bundles yet; use a model sharing that vocabulary")
    return {"lowercase": bool(head.get("lowercase", True))}


FAMILY = ModelFamily(
    name="minilm",
    kind=SENTENCE_ENCODER,
    model_type=SentenceEncoder,
    build=_build,
    arch=lambda model: {**model.bert.config.to_dict(), HEAD: dict(model.head)},
    towers=_towers,
    default_data="fortunes",
    text=dataclasses.replace(MINILM_TEXT, arch_fields=_text_fields),
    bundled=True,
)
