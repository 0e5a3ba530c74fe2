"""English sentence corpora for embedding models: Debian's `fortunes` package (BSD licence) for
training, and WordNet glosses (Debian `wordnet-base`) as a second evaluation set training never sees.

Fortunes are split into sentences of 6-40 words, deduplicated and ordered by a hash of their text,
so the 1,000 held-out sentences are the same on every machine and never appear in training.
WordNet glosses go through the same rule: each synset's definition (the gloss before its quoted
examples), 6-40 words, deduplicated, hash-ordered, the first 1,000 taken.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclip.errors import TrainingError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_PARTS = ("data.noun", "data.verb", "data.adj", "data.adv")
HELD_OUT = 1000
MIN_WORDS, MAX_WORDS = 6, 40
_SKIP_FILES = {"art", "ascii-art"}  # pictures, not prose
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z])")
_ATTRIBUTION = re.compile(r"^\s*--\s")
_PROSE = re.compile(r"^[A-Za-z0-9\"'(][A-Za-z0-9 ,;:.!?'\"()\-]*[.!?\"')]$")


@dataclass(frozen=True)
class SentenceCorpus:
    train: list[str]
    held_out: list[str]
    name: str = "fortunes"
    skipped: int = 0

    def batch_at(self, step: int, batch_size: int, seed: int) -> list[int]:
        """Indices into `train` for global batch `step` (same order on resume and across ranks)."""
        from edgeclip.training.data import epoch_order

        return epoch_order(len(self.train), batch_size, step, seed).tolist()


def fortunes_dir() -> Path:
    return Path(os.environ.get("EDGECLIP_FORTUNES", FORTUNES_DIR))


def split_sentences(text: str) -> list[str]:
    """Sentences of one fortune: attribution lines dropped, whitespace collapsed, 6-40 words, prose only."""
    body = " ".join(line for line in text.splitlines() if not _ATTRIBUTION.match(line))
    body = " ".join(body.split())
    return [
        s
        for s in _SENTENCE_END.split(body)
        if MIN_WORDS <= len(s.split()) <= MAX_WORDS and _PROSE.match(s)
    ]


def _sort_key(sentence: str) -> str:
    return hashlib.sha256(sentence.encode()).hexdigest()


def load_fortunes(held_out: int = HELD_OUT) -> SentenceCorpus:
    root = fortunes_dir()
    files = sorted(p for p in root.glob("*") if p.is_file() and not p.suffix and p.name not in _SKIP_FILES)
    if not files:
        raise TrainingError(
            f"no fortune files in {root}; run `apt-get install fortunes` or set EDGECLIP_FORTUNES to their directory"
        )
    sentences = set()
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for fortune in text.split("\n%\n"):
            sentences.update(split_sentences(fortune))
    ordered = sorted(sentences, key=_sort_key)
    if len(ordered) <= held_out:
        raise TrainingError(f"only {len(ordered)} sentences in {root}; need more than the {held_out} held out")
    return SentenceCorpus(train=ordered[held_out:], held_out=ordered[:held_out])


def wordnet_dir() -> Path:
    return Path(os.environ.get("EDGECLIP_WORDNET", WORDNET_DIR))


def gloss_definition(line: str) -> str | None:
    """The definition in one line of a WordNet data file (`... | definition; "example"`), or None
    for the licence header and glosses without one."""
    if not line[:1].isdigit() or " | " not in line:
        return None
    gloss = line.split(" | ", 1)[1].strip()
    definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
    return " ".join(definition.split()) or None


def load_wordnet_glosses(count: int = HELD_OUT) -> list[str]:
    """`count` WordNet definitions of 6-40 words, the same on every machine (hash order)."""
    root = wordnet_dir()
    paths = [root / part for part in WORDNET_PARTS]
    if not all(path.is_file() for path in paths):
        raise TrainingError(f"no WordNet data files ({', '.join(WORDNET_PARTS)}) in {root}; run "
                            "`apt-get install wordnet-base` or set EDGECLIP_WORDNET to their directory")
    glosses = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            definition = gloss_definition(line)
            if definition and MIN_WORDS <= len(definition.split()) <= MAX_WORDS:
                glosses.add(definition)
    ordered = sorted(glosses, key=_sort_key)
    if len(ordered) < count:
        raise TrainingError(f"only {len(ordered)} WordNet glosses of {MIN_WORDS}-{MAX_WORDS} words in {root}; "
                            f"need {count}")
    return ordered[:count]


def sentence_lengths(sentences: list[str]) -> np.ndarray:
    return np.array([len(s.split()) for s in sentences])
