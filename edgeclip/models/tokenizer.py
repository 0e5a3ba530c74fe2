"""CLIP's byte-level BPE tokenizer, reading the vocabulary shipped with open_clip_torch.

Written here because importing open_clip pulls torchvision and ftfy, neither of which an edge
build needs. ftfy's mojibake repair is skipped; cleanup is html-unescape, NFC, whitespace, lowercase.
"""

import gzip
import html
import importlib.util
import unicodedata
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import regex
import torch

from edgeclip.errors import ModelError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
_MERGE_COUNT = 49152 - 256 - 2  # the CLIP vocabulary uses the first 48894 merges of the file
_WHITESPACE = regex.compile(r"\s+")
_WORD_PATTERN = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)


def _byte_table() -> dict[int, str]:
    """One printable character per byte value, so BPE never sees whitespace or control bytes.

    Bytes that are already visible Latin-1 characters stand for themselves; the rest are moved to
    code points 256 and up, in byte order. The table's order is the order of the base vocabulary.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    hidden = [b for b in range(256) if b not in set(visible)]
    table = {b: chr(b) for b in visible}
    table.update({b: chr(256 + i) for i, b in enumerate(hidden)})
    return table


def default_vocab_path() -> Path:
    """Locate the vocabulary inside the installed open_clip package without importing it."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"CLIP tokenizer vocabulary {VOCAB_FILE} not found: open_clip is not installed; "
            "run `pip install --no-deps open_clip_torch` or pass vocab_path"
        )
    return Path(next(iter(spec.submodule_search_locations))) / VOCAB_FILE


def clean_text(text: str) -> str:
    """Undo (double) HTML escaping, NFC-normalise (as ftfy would), collapse whitespace, lowercase.

    Whitespace is Unicode White_Space (regex `\\s`), not str.split's wider set that also eats \\x1c-\\x1f.
    """
    text = unicodedata.normalize("NFC", html.unescape(html.unescape(text)))
    return _WHITESPACE.sub(" ", text).strip().lower()


class ClipTokenizer:
    """`encode(text)` gives BPE ids; calling with texts gives a [B, context_length] LongTensor."""

    def __init__(self, vocab_path=None):
        path = Path(vocab_path) if vocab_path is not None else default_vocab_path()
        if not path.is_file():
            raise ModelError(
                f"CLIP tokenizer vocabulary {path} not found; "
                "run `pip install --no-deps open_clip_torch` or pass vocab_path to the file"
            )
        try:
            lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise ModelError(
                f"CLIP tokenizer vocabulary {path} is not a gzipped UTF-8 text file: {err}"
            ) from err
        self.merges = [tuple(line.split()) for line in lines[1 : 1 + _MERGE_COUNT]]
        if len(self.merges) != _MERGE_COUNT or any(len(m) != 2 for m in self.merges):
            raise ModelError(
                f"CLIP tokenizer vocabulary {path} is truncated or malformed; reinstall open_clip_torch"
            )
        self._bytes = _byte_table()
        alphabet = list(self._bytes.values())
        tokens = alphabet + [ch + "</w>" for ch in alphabet] + ["".join(m) for m in self.merges]
        tokens += [START_TOKEN, END_TOKEN]
        self.vocab = {token: i for i, token in enumerate(tokens)}
        self.start_id, self.end_id = self.vocab[START_TOKEN], self.vocab[END_TOKEN]
        self._ranks = {merge: rank for rank, merge in enumerate(self.merges)}
        self._bpe = lru_cache(maxsize=65536)(self._bpe_word)

    def _bpe_word(self, word: str) -> tuple[str, ...]:
        """Greedily apply the lowest-ranked merge until none applies; the last symbol ends the word."""
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = set(pairwise(parts))
            best = min(pairs, key=lambda pair: self._ranks.get(pair, len(self._ranks)))
            if best not in self._ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` without start/end tokens."""
        ids = []
        for word in _WORD_PATTERN.findall(clean_text(text)):
            if word in (START_TOKEN, END_TOKEN):
                ids.append(self.vocab[word])
                continue
            symbols = "".join(self._bytes[b] for b in word.encode("utf-8"))
            ids.extend(self.vocab[part] for part in self._bpe(symbols))
        return ids

    def __call__(self, texts, context_length: int = 77) -> torch.LongTensor:
        """Start + ids + end, truncated to `context_length` keeping the end token, zero padded."""
        if isinstance(texts, str):
            texts = [texts]
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id]
            if len(ids) > context_length:
                ids = [*ids[: context_length - 1], self.end_id]
            result[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return result
