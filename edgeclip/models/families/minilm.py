"""BERT-family sentence encoders (all-MiniLM-L6-v2 and local sentence-transformers directories):
one text tower with mean pooling and L2 normalisation (`edgeclip.models.minilm.SentenceEncoder`)."""

from __future__ import annotations

from transformers import BertConfig, BertModel

from edgeclip.models.families.base import SENTENCE_ENCODER, ModelFamily
from edgeclip.models.minilm import SentenceEncoder
from edgeclip.models.towers import Tower, text_inputs
from edgeclip.models.wordpiece import MINILM_TEXT

SEQ_LEN = 128


def _towers(model: SentenceEncoder, batch: int = 1, seq_len: int | None = None) -> dict[str, Tower]:
    return {"text": Tower("text", model.eval(), text_inputs(batch, seq_len or SEQ_LEN))}


FAMILY = ModelFamily(
    name="minilm",
    kind=SENTENCE_ENCODER,
    model_type=SentenceEncoder,
    build=lambda arch: SentenceEncoder(BertModel(BertConfig.from_dict(arch))).eval(),
    arch=lambda model: model.bert.config.to_dict(),
    towers=_towers,
    default_data="fortunes",
    text=MINILM_TEXT,
)
