"""Demo step 5: the host bundle classifies real images: scikit-image's sample photos (out of domain
for a Fashion-MNIST model: they show what it makes of any picture) and Fashion-MNIST test images
(with their true labels). The PyTorch student classifies the same files, so the table shows
whether the compiled bundle agrees with the model it was built from.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
PROMPT = "a photo of a {}."


@dataclass(frozen=True)
class Sample:
    name: str
    path: str
    source: str  # "skimage" or "fashion-mnist"
    truth: str | None = None


def samples(folder: Path, fashion_count: int, photo_count: int) -> tuple[list[Sample], str | None]:
    """(images to classify, why the photos are missing or None): Fashion-MNIST test images of
    distinct classes are saved as PNGs into `folder`."""
    from PIL import Image

    from edgeclip.training.data import load_fashion_mnist

    folder.mkdir(parents=True, exist_ok=True)
    photos, missing = _photos(photo_count)
    data = load_fashion_mnist("test")
    picked = []
    for index, label in enumerate(data.labels):
        if label not in {data.labels[i] for i in picked}:
            picked.append(index)
        if len(picked) == fashion_count:
            break
    fashion = []
    for index in picked:
        truth = data.classes[int(data.labels[index])]
        path = folder / f"fashion-{index}.png"
        Image.fromarray(data.images[index]).save(path)
        fashion.append(Sample(f"Fashion-MNIST test #{index}", str(path), "fashion-mnist", truth))
    return photos + fashion, missing


def _photos(count: int) -> tuple[list[Sample], str | None]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return [], "scikit-image is not installed (pip install scikit-image): no sample photos"
    data_dir = Path(spec.origin).parent / "data"
    found = [Sample(f"skimage {name}", str(data_dir / name), "skimage") for name in PHOTOS if (data_dir / name).is_file()]
    if not found:
        return [], f"scikit-image has none of {', '.join(PHOTOS)} in {data_dir}"
    return found[:count], None


def classes() -> list[str]:
    from edgeclip.training.data import FASHION_CLASSES

    return list(FASHION_CLASSES)


def predict(bundle: Path, checkpoint: Path, items: list[Sample]) -> list[dict]:
    """One row per image: the bundle's and PyTorch's top-1 class and probability."""
    from edgeclip.bundle.local import classify_images

    names = classes()
    prompts = [PROMPT.format(name) for name in names]
    rankings = classify_images(bundle, [item.path for item in items], prompts)
    torch_probs = _torch_probabilities(checkpoint, [item.path for item in items], prompts)
    rows = []
    for item, ranking, probs in zip(items, rankings, torch_probs, strict=True):
        top_prompt, top_p = ranking[0]
        best = int(np.argmax(probs))
        rows.append({**asdict(item), "bundle": names[prompts.index(top_prompt)], "bundle_p": top_p,
                     "torch": names[best], "torch_p": float(probs[best])})
    return rows


def _torch_probabilities(checkpoint: Path, paths: list[str], prompts: list[str]) -> np.ndarray:
    """CLIP's softmax over 100·cosine, from the PyTorch model and its own preprocessing."""
    import torch

    dual = dual_encoder(checkpoint)
    with torch.no_grad():
        image_embeddings = torch.from_numpy(torch_image_embeddings(dual, paths))
        tokens = dual.tokenize(prompts)
        text_embeddings = dual.encode_text(tokens["input_ids"], tokens["attention_mask"])
        return torch.softmax(100 * image_embeddings @ text_embeddings.t(), dim=1).numpy()


def torch_image_embeddings(dual, paths: list[str]) -> np.ndarray:
    """A DualEncoder's L2-normalised image embeddings [N, D] of image files (its own preprocessing)."""
    import torch
    from PIL import Image

    with torch.no_grad():
        images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
        return dual.encode_image(dual.preprocess(images)).numpy()


@functools.lru_cache(maxsize=2)
def dual_encoder(checkpoint: Path):
    """The PyTorch model of a checkpoint, as the CLIP pair the demo compares bundles with; loaded
    once per run, as the classify step and the on-board step both compare with it."""
    from edgeclip.models.dual import DualEncoder
    from edgeclip.models.model_io import load_model

    model, _ = load_model(checkpoint)
    return DualEncoder(model).eval()
