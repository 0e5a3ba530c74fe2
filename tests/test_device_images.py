"""The runner's `preprocess` subcommand against the host's preprocessing, on a real host bundle:
PNGs and JPEGs give exactly the host's uint8 pixels (both sides decode JPEGs with libjpeg-turbo), and
bad images are refused with one line before anything large is allocated."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import make_tiny_clip_dir
from PIL import Image

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.models.families import family
from edgeclip.models.preprocess import clip_pixels
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """(command prefix of the extracted host bundle's runner, its manifest)."""
    root = tmp_path_factory.mktemp("images")
    _, checkpoint = ternarize_source(str(make_tiny_clip_dir(root / "teacher")), TernaryConfig(), root / "ckpt")
    bundle = build_bundle(checkpoint, "x86-64-v3", root / "bundles", towers=("image",))
    with local.extracted(bundle) as (folder, manifest):
        yield local.runner_command(folder, manifest, emulate=False) + ["preprocess", "--bundle", str(folder)], manifest


def _photos(folder: Path) -> list[Path]:
    paths = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "horse"):
        array = np.asarray(getattr(skimage_data, name)())
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        paths.append(folder / f"{name}.png")
        Image.fromarray(array).save(paths[-1])
    rng = np.random.default_rng(0)
    for shape in ((1, 300, 3), (300, 1, 3), (17, 230), (40, 52, 4)):
        paths.append(folder / f"noise-{'x'.join(map(str, shape))}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    return paths


def _device(command, image: Path, tmp_path: Path):
    out, raw = tmp_path / "out.npy", tmp_path / "raw.npy"
    done = subprocess.run([*command, "--image", str(image), "--out", str(out), "--uint8-out", str(raw)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.load(out), np.load(raw)


def test_pngs_give_exactly_the_hosts_pixels(runner, tmp_path):
    command, manifest = runner
    size = manifest["preprocessing"]["image_size"]
    for path in _photos(tmp_path):
        tensor, raw = _device(command, path, tmp_path)
        np.testing.assert_array_equal(raw, clip_pixels(Image.open(path), size), err_msg=path.name)
        host = family("hf-clip").image.pixels(Image.open(path), manifest["preprocessing"])
        np.testing.assert_allclose(tensor, host, atol=1e-5, err_msg=path.name)


def test_jpegs_and_exif_orientation_give_exactly_the_hosts_pixels(runner, tmp_path):
    command, manifest = runner
    size = manifest["preprocessing"]["image_size"]
    photo = Image.fromarray(np.asarray(skimage_data.astronaut()))
    for quality, subsampling in ((30, 2), (75, 1), (95, 0)):  # 4:2:0, 4:2:2, 4:4:4
        for orientation in (1, 3, 6, 8):
            path = tmp_path / f"q{quality}-o{orientation}.jpg"
            exif = Image.Exif()
            exif[0x0112] = orientation
            photo.save(path, quality=quality, subsampling=subsampling, exif=exif.tobytes())
            _, raw = _device(command, path, tmp_path)
            host = clip_pixels(Image.open(path), size)
            np.testing.assert_array_equal(raw, host, err_msg=path.name)


def _huge_jpeg(path: Path) -> None:
    """A real 64x48 JPEG whose frame header (SOF0) claims 20000x20000."""
    small = path.with_suffix(".small.jpg")
    Image.new("RGB", (64, 48), (200, 30, 90)).save(small)
    data = bytearray(small.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (20000).to_bytes(2, "big") * 2  # height, width
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", ["missing", "text", "truncated-jpeg", "huge-png", "imageless-jpeg", "huge-jpeg"])
def test_a_bad_image_is_refused_in_one_line(runner, tmp_path, case):
    import zlib

    command, _ = runner
    path = tmp_path / f"{case}.img"
    if case == "text":
        path.write_text("not an image\n")
    elif case == "truncated-jpeg":
        Image.fromarray(np.asarray(skimage_data.coffee())).save(tmp_path / "whole.jpg")
        path.write_bytes((tmp_path / "whole.jpg").read_bytes()[:5000])
    elif case == "imageless-jpeg":  # start and end of image, nothing between: libjpeg's own error
        path.write_bytes(b"\xff\xd8\xff\xd9")
    elif case == "huge-jpeg":
        _huge_jpeg(path)
    elif case == "huge-png":
        def chunk(kind, data):
            return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
        header = (20000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 60001))
                         + chunk(b"IEND", b""))
    done = subprocess.run([*command, "--image", str(path), "--out", str(tmp_path / "o.npy")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "o.npy").exists()
    if case.startswith("huge"):
        assert "20000x20000 = 400000000 pixels, over the limit" in done.stderr, done.stderr
    if case == "imageless-jpeg":
        assert "JPEG datastream contains no image" in done.stderr, done.stderr
    json.dumps(done.stderr)  # printable, one line
