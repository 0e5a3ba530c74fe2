"""Small real inputs for the training tests: captioned images on disk and a tiny BERT directory."""

import csv
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def colour_image(name: str, seed: int, size: int = 32) -> np.ndarray:
    """A solid colour with noise: captions ('a red square') are learnable from the pixels."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[name], dtype=np.int16)
    noisy = base + rng.integers(-20, 21, size=(size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_caption_folder(root: Path, count: int = 16, table: str = "csv", broken: int = 0) -> Path:
    """`count` good images + `broken` undecodable files, listed in captions.csv or captions.jsonl."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    names = list(COLOURS)
    for i in range(count):
        colour = names[i % len(names)]
        (root / f"img{i}.png").write_bytes(png_bytes(colour_image(colour, i)))
        rows.append({"image": f"img{i}.png", "caption": f"a {colour} square number {i}"})
    for i in range(broken):
        (root / f"bad{i}.png").write_bytes(b"not an image at all")
        rows.append({"image": f"bad{i}.png", "caption": "unreadable"})
    if table == "csv":
        path = root / "captions.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "caption"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path = root / "captions.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_shard(path: Path, samples: list[tuple[str, bytes | None, str | None]]) -> Path:
    """A webdataset-style shard: key.png + key.txt per sample (None leaves that member out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for key, image, caption in samples:
            for suffix, data in ((".png", image), (".txt", None if caption is None else caption.encode())):
                if data is not None:
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    return path


def make_tiny_bert_dir(path: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with the real MiniLM vocabulary and tokenizer files, random weights."""
    import torch
    from transformers import BertConfig, BertModel

    from edgeclip.models.wordpiece import minilm_tokenizer, minilm_vocab

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(path)
    minilm_tokenizer().save_pretrained(path)
    shutil.copyfile(minilm_vocab(), path / "vocab.txt")  # what a sentence-transformers folder carries
    return path
