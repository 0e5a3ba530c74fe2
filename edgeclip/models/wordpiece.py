"""BERT WordPiece as the text towers of the demo CLIP and the sentence encoders use it: the
tokenizer of a bundle (from the vocabulary file it carries) and the one training batches use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeclip.errors import ModelError
from edgeclip.models.families.base import TextInput, Tokenize

TRAINING_MAX_LENGTH = 128


def minilm_vocab() -> Path:
    from edgeclip.models.minilm import minilm_path

    return minilm_path() / "vocab.txt"


def bundle_tokenizer(vocab: Path, fields: dict) -> Tokenize:
    """[CLS] + WordPiece ids + [SEP], truncated and zero padded to the context; mask = real tokens."""
    from transformers import BertTokenizer

    try:
        tokens = vocab.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read the WordPiece vocabulary {vocab} ({err}); rebuild the bundle") from err
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=fields["lowercase"])

    def tokenize(text: str) -> tuple[np.ndarray, np.ndarray]:
        batch = tokenizer([text], padding="max_length", truncation=True, max_length=fields["context_length"],
                          return_tensors="np")
        return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)

    return tokenize


def minilm_tokenizer(path=None):
    """The WordPiece tokenizer of all-MiniLM-L6-v2 (or of the BERT directory `path`), offline."""
    from transformers import AutoTokenizer

    from edgeclip.models.minilm import minilm_path

    directory = path if path is not None else minilm_path()
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelError(f"could not load a tokenizer from {directory}: {err}; pass a directory with tokenizer files") from err


def _batch_tokenizer():
    tokenizer = minilm_tokenizer()

    def tokenize(texts: list[str]) -> dict[str, torch.Tensor]:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=TRAINING_MAX_LENGTH, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    return tokenize


MINILM_TEXT = TextInput(vocab_member="tokenizer/vocab.txt", installed_vocab=minilm_vocab,
                        fields={"kind": "wordpiece", "lowercase": True}, tokenizer=bundle_tokenizer,
                        batch_tokenizer=_batch_tokenizer)
