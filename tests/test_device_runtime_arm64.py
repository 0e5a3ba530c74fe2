"""The device runtime on a real rpi4 bundle under qemu-aarch64, against the host: `classify` on
real photos and Fashion-MNIST frames (one runner process for all images and labels) picks the
top-1 that the same bundle gives with host preprocessing, `embed` of a 100-image folder agrees
with the PyTorch image tower (and at --batch 8 with itself one image a call), and device preprocessing gives exactly the host's pixels (PNG and JPEG)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgeclip.bundle import local
from edgeclip.bundle.model_info import manifest_family, read_image
from edgeclip.models.model_io import load_model
from edgeclip.models.preprocess import clip_pixels
from edgeclip.training.data import fashion_mnist_dir, load_fashion_mnist

skimage = pytest.importorskip("skimage")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not fashion_mnist_dir().joinpath("t10k-images-idx3-ubyte.gz").is_file(),
                       reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)"),
]

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg",
          "motorcycle_left.png")
LABELS = ["a photo of an astronaut", "a photo of a cat", "a cup of coffee", "a rocket launch", "galaxies in space",
          "a retina scan", "a motorcycle", "a t-shirt", "a pair of trousers", "an ankle boot"]


@pytest.fixture(scope="module")
def device(tiny_clip_rpi4_bundle):
    """(the emulated runner's command prefix, the extracted folder, its manifest)."""
    with local.extracted(tiny_clip_rpi4_bundle) as (folder, manifest):
        yield local.runner_command(folder, manifest, emulate=True), folder, manifest


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """12 real images: seven scikit-image photos (PNG and JPEG, up to 1411 px) and five Fashion-MNIST frames."""
    data_dir = Path(skimage.__file__).parent / "data"
    folder = tmp_path_factory.mktemp("images")
    frames = load_fashion_mnist("test").images
    paths = [data_dir / name for name in PHOTOS]
    for i in range(5):
        paths.append(folder / f"fashion-{i}.png")
        Image.fromarray(frames[i]).save(paths[-1])
    return paths


def _run(command: list[str], *args: str) -> list[dict]:
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _torch_towers(checkpoint):
    model, config = load_model(checkpoint)
    from edgeclip.models.families import family

    return family(config["family"]).towers(model)


def test_classify_on_the_board_agrees_with_host_preprocessing(device, images, tiny_clip_rpi4_bundle,
                                                              tiny_clip_ternary, record_property):
    command, folder, manifest = device
    answers = _run(command, "classify", "--bundle", str(folder), "--image", *map(str, images),
                   "--labels", ",".join(LABELS), "--top", "3")
    assert [a["image"] for a in answers] == [str(p) for p in images]
    assert all(len(a["top"]) == 3 and a["top"][0]["p"] >= a["top"][1]["p"] >= a["top"][2]["p"] for a in answers)
    on_board = [a["top"][0]["label"] for a in answers]
    host = [ranking[0][0] for ranking in local.classify_images(tiny_clip_rpi4_bundle, images, LABELS, emulate=True)]
    agree = sum(a == b for a, b in zip(on_board, host, strict=True))
    assert agree >= 11, list(zip(on_board, host, strict=True))

    towers, family = _torch_towers(tiny_clip_ternary), manifest_family(manifest)
    tokenize = family.text.tokenizer(family.text.installed_vocab(), manifest["tokenizer"])
    with torch.no_grad():
        texts = torch.cat([towers["text"].module(*map(torch.from_numpy, tokenize(label))) for label in LABELS])
        pixels = [family.image.pixels(read_image(p), manifest["preprocessing"]) for p in images]
        pictures = torch.cat([towers["image"].module(torch.from_numpy(x)) for x in pixels])
    pytorch = [LABELS[i] for i in (pictures @ texts.T).argmax(dim=1).tolist()]
    record_property("top1_board_vs_host", f"{agree}/12")
    record_property("top1_board_vs_pytorch", f"{sum(a == b for a, b in zip(on_board, pytorch, strict=True))}/12")


def test_device_preprocessing_gives_exactly_the_hosts_pixels(device, images, tmp_path):
    command, folder, manifest = device
    size = manifest["preprocessing"]["image_size"]
    for path in images:
        raw = tmp_path / "raw.npy"
        done = subprocess.run([*command, "preprocess", "--bundle", str(folder), "--image", str(path),
                               "--out", str(tmp_path / "x.npy"), "--uint8-out", str(raw)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        host = clip_pixels(Image.open(path), size)
        np.testing.assert_array_equal(np.load(raw), host, err_msg=path.name)


def test_embed_a_folder_of_100_images_matches_the_pytorch_tower(device, tiny_clip_ternary, tmp_path, record_property):
    command, folder, manifest = device
    photos = tmp_path / "photos"
    photos.mkdir()
    frames = load_fashion_mnist("test").images
    for i in range(90):
        Image.fromarray(frames[i]).save(photos / f"frame-{i:03d}.png")
    coffee = np.asarray(skimage.data.coffee())
    for i in range(10):
        Image.fromarray(coffee[i * 20:i * 20 + 200, i * 30:i * 30 + 260]).save(photos / f"crop-{i}.JPG", quality=90)
    (photos / "notes.txt").write_text("not an image: skipped, only JPEG/PNG files are embedded\n")
    out = tmp_path / "embeddings.npy"
    (summary,) = _run(command, "embed", "--bundle", str(folder), "--image", str(photos), "--out", str(out))
    embeddings = np.load(out)
    assert summary["count"] == 100 and embeddings.shape == (100, summary["dim"]) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)

    names = sorted(p.name for p in photos.iterdir() if p.suffix != ".txt")
    family, tower = manifest_family(manifest), _torch_towers(tiny_clip_ternary)["image"]
    with torch.no_grad():
        expected = torch.cat([tower.module(torch.from_numpy(family.image.pixels(read_image(photos / name),
                                                                                 manifest["preprocessing"])))
                              for name in names]).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosines = np.sum(embeddings.astype(np.float64) * expected, axis=1)
    record_property("embed_cosine_min", f"{cosines.min():.5f}")
    assert cosines.min() >= 0.995, (names[int(cosines.argmin())], float(cosines.min()))
    # Eight a call (12 x 8 + 4 x 1 on the 1,8 bundle), on the board's own kernels: the same rows.
    _run(command, "embed", "--bundle", str(folder), "--image", str(photos), "--batch", "8", "--out", str(out))
    batched = np.load(out).astype(np.float64)
    assert np.sum(batched * embeddings, axis=1).min() >= 0.9999
