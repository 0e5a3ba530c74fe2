"""Image-text data: Fashion-MNIST with prompt captions, folder + CSV/JSONL captions, tar shards.

Every source hands out `PairBatch`es for a step number, so a resumed or distributed run sees
exactly the batches an uninterrupted single-process run would. Unreadable samples are skipped
and counted in `source.skipped`; the training loop prints that count, it is never silent.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from edgeclip.errors import TrainingError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_CLASSES = (
    "t-shirt",
    "pair of trousers",
    "pullover sweater",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a grayscale picture of a {}.",
    "a product photo of a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "an image of a {}, a fashion item.",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CAPTION_SUFFIXES = (".txt", ".caption")


@dataclass
class PairBatch:
    """B images with U distinct captions; `text_index[b]` is image b's caption, `labels` its class if known."""

    images: list[np.ndarray]
    texts: list[str]
    text_index: torch.Tensor
    labels: torch.Tensor | None = None

    def shard(self, rank: int, world: int) -> PairBatch:
        """This process's slice of a global batch (every rank-th image, captions re-indexed)."""
        keep = list(range(rank, len(self.images), world))
        used = sorted({int(self.text_index[i]) for i in keep})
        remap = {old: new for new, old in enumerate(used)}
        return PairBatch(
            images=[self.images[i] for i in keep],
            texts=[self.texts[u] for u in used],
            text_index=torch.tensor([remap[int(self.text_index[i])] for i in keep], dtype=torch.long),
            labels=None if self.labels is None else self.labels[keep],
        )


def captioned(images: list[np.ndarray], captions: list[str], labels=None) -> PairBatch:
    """A batch from one caption per image, deduplicating equal captions."""
    unique = list(dict.fromkeys(captions))
    position = {text: i for i, text in enumerate(unique)}
    index = torch.tensor([position[c] for c in captions], dtype=torch.long)
    return PairBatch(images, unique, index, labels)


def epoch_order(size: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of global batch `step`: a fresh seeded permutation per epoch, stitched across epochs."""
    if size == 0:
        raise TrainingError("the training data is empty")
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), size)
        order = np.random.default_rng([seed, epoch]).permutation(size)
        out.extend(order[offset : offset + batch_size - len(out)].tolist())
    return np.asarray(out)


# ---- Fashion-MNIST -------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip or plain), as used by (Fashion-)MNIST: magic, dims, big-endian payload."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except OSError as err:
        raise TrainingError(f"cannot read {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise TrainingError(f"{path} is not an unsigned-byte idx file; reinstall dataset-fashion-mnist")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise TrainingError(f"{path} is truncated ({payload.size} bytes for shape {dims}); reinstall the dataset")
    return payload.reshape(dims)


@dataclass
class LabeledImages:
    """Images with class labels, the class names and the prompt templates that caption them."""

    images: np.ndarray  # uint8 [N, H, W]
    labels: np.ndarray  # int64 [N]
    classes: tuple[str, ...]
    templates: tuple[str, ...]
    name: str
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def prompts(self, class_id: int) -> list[str]:
        return [t.format(self.classes[class_id]) for t in self.templates]

    def batch_at(self, step: int, batch_size: int, seed: int) -> PairBatch:
        """Captions use one template per step, so a batch has at most one caption per class."""
        indices = epoch_order(len(self), batch_size, step, seed)
        template = self.templates[int(np.random.default_rng([seed, step, 1]).integers(len(self.templates)))]
        labels = self.labels[indices]
        captions = [template.format(self.classes[c]) for c in labels]
        return captioned(list(self.images[indices]), captions, torch.from_numpy(labels.astype(np.int64)))


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("EDGECLIP_FASHION_MNIST", FASHION_MNIST_DIR))


def load_fashion_mnist(split: str) -> LabeledImages:
    """The 'train' (60k) or 'test' (10k) split; the two are never mixed."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise TrainingError(f"Fashion-MNIST split {split!r} does not exist; use 'train' or 'test'")
    root = fashion_mnist_dir()
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.is_file():
        raise TrainingError(
            f"Fashion-MNIST not found in {root}; run `apt-get install dataset-fashion-mnist` "
            "or set EDGECLIP_FASHION_MNIST to a directory holding the idx files"
        )
    images = read_idx(images_path)
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if len(images) != len(labels):
        raise TrainingError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels; reinstall it")
    return LabeledImages(images, labels, FASHION_CLASSES, PROMPT_TEMPLATES, f"fashion-mnist-{split}")


# ---- folder + CSV/JSONL captions -----------------------------------------------------------------


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> uint8 RGB array; raises OSError/ValueError for anything unreadable."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


class CaptionTable:
    """Images in a folder listed with captions in a CSV (`image,caption` header) or JSONL file.

    Images are read when a batch needs them; a missing or undecodable one is skipped and counted.
    """

    IMAGE_KEYS = ("image", "filepath", "file", "path")
    CAPTION_KEYS = ("caption", "title", "text")

    def __init__(self, table: Path):
        self.table = Path(table)
        self.root = self.table.parent
        self.rows = self._read_rows()
        self.skipped = 0
        self.name = self.table.stem

    def __len__(self) -> int:
        return len(self.rows)

    def _read_rows(self) -> list[tuple[str, str]]:
        try:
            text = self.table.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TrainingError(f"cannot read caption table {self.table}: {err}") from err
        if self.table.suffix == ".jsonl":
            records = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise TrainingError(f"{self.table}:{number} is not valid JSON ({err})") from err
        else:
            records = list(csv.DictReader(io.StringIO(text)))
        rows = [(self._field(r, self.IMAGE_KEYS), self._field(r, self.CAPTION_KEYS)) for r in records]
        if not rows:
            raise TrainingError(f"caption table {self.table} lists no images")
        return rows

    def _field(self, record, keys) -> str:
        for key in keys:
            if isinstance(record, dict) and isinstance(record.get(key), str):
                return record[key]
        raise TrainingError(f"{self.table}: a row lacks one of the columns {', '.join(keys)}: {record!r}")

    def load(self, index: int) -> tuple[np.ndarray, str] | None:
        name, caption = self.rows[index]
        try:
            return decode_image((self.root / name).read_bytes()), caption
        except (OSError, ValueError, UnidentifiedImageError):
            self.skipped += 1
            return None

    def batch_at(self, step: int, batch_size: int, seed: int) -> PairBatch:
        samples = [s for s in (self.load(int(i)) for i in epoch_order(len(self), batch_size, step, seed)) if s]
        return _batch_or_error(samples, self.table)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        for index in range(len(self)):
            sample = self.load(index)
            if sample is not None:
                yield sample


# ---- webdataset-style tar shards -----------------------------------------------------------------


class TarShards:
    """Streams `key.jpg` + `key.txt` pairs from tar shards in order (the CC12M/img2dataset layout).

    Reading never loads a shard into memory. A member that cannot be decoded, or a key without both
    an image and a caption, is skipped and counted. Batches are consecutive samples; asking for an
    earlier step re-opens the shards and skips ahead, so resume lands on the same samples.
    """

    def __init__(self, shards: list[Path]):
        if not shards:
            raise TrainingError("no tar shards given; pass a directory of NNNNNN.tar files or a .tar path")
        self.shards = [Path(s) for s in shards]
        self.name = self.shards[0].parent.name or "shards"
        self.skipped = 0
        self._stream = None
        self._position = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        for shard in self.shards:
            yield from self._read_shard(shard)

    def _read_shard(self, shard: Path) -> Iterator[tuple[np.ndarray, str]]:
        key, parts = None, {}
        try:
            with tarfile.open(shard, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    stem, _, suffix = member.name.rpartition(".")
                    if stem != key:
                        yield from self._complete(key, parts)
                        key, parts = stem, {}
                    parts["." + suffix.lower()] = archive.extractfile(member).read()
        except (OSError, tarfile.TarError, EOFError):
            self.skipped += 1  # a truncated shard ends early; what was read before stays usable
        yield from self._complete(key, parts)

    def _complete(self, key, parts) -> Iterator[tuple[np.ndarray, str]]:
        if key is None:
            return
        image_data = next((parts[s] for s in IMAGE_SUFFIXES if s in parts), None)
        caption = next((parts[s] for s in CAPTION_SUFFIXES if s in parts), None)
        try:
            if image_data is None or caption is None:
                raise ValueError(f"sample {key} lacks an image or a caption")
            yield decode_image(image_data), caption.decode("utf-8").strip()
        except (OSError, ValueError, UnidentifiedImageError, UnicodeDecodeError):
            self.skipped += 1

    def batch_at(self, step: int, batch_size: int, seed: int) -> PairBatch:
        del seed  # shards are read in their stored order; shuffle when writing them
        target = step * batch_size
        if self._stream is None or self._position > target:
            self._stream, self._position = self._endless(), 0
        while self._position < target:
            next(self._stream)
            self._position += 1
        samples = [next(self._stream) for _ in range(batch_size)]
        self._position += batch_size
        return _batch_or_error(samples, self.shards[0])

    def _endless(self) -> Iterator[tuple[np.ndarray, str]]:
        while True:
            produced = False
            for sample in self:
                produced = True
                yield sample
            if not produced:
                raise TrainingError(f"no readable samples in {len(self.shards)} shard(s) ({self.skipped} skipped)")


def _batch_or_error(samples, where) -> PairBatch:
    if not samples:
        raise TrainingError(f"every sample of a batch from {where} was unreadable; check the data")
    images, captions = zip(*samples, strict=True)
    return captioned(list(images), list(captions))


# ---- choosing a source ---------------------------------------------------------------------------


def open_pairs(spec: str, split: str = "train"):
    """A data spec -> source: 'fashion-mnist', a .csv/.jsonl table, a .tar shard, or a directory."""
    if spec in ("fashion-mnist", "fashion_mnist"):
        return load_fashion_mnist(split)
    path = Path(spec)
    if path.is_file() and path.suffix in (".csv", ".jsonl"):
        return CaptionTable(path)
    if path.is_file() and path.suffix == ".tar":
        return TarShards([path])
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
        if shards:
            return TarShards(shards)
        for table in ("captions.csv", "captions.jsonl"):
            if (path / table).is_file():
                return CaptionTable(path / table)
    raise TrainingError(
        f"data {spec!r} not understood; pass 'fashion-mnist', a captions .csv/.jsonl file, a .tar shard, "
        "or a directory holding NNNNNN.tar shards or captions.csv/captions.jsonl"
    )
