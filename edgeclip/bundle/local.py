"""Using a bundle on this machine: verify it, run its native runner (natively for a host bundle,
under qemu-user with `emulate` for an aarch64 one), classify an image or embed text with it.

Everything goes through the bundle's own runner binary and libraries, exactly as on the device;
Python only prepares inputs (preprocessing, tokenizer) and reads the outputs back.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgeclip.bundle.model_info import manifest_family, read_image
from edgeclip.errors import BundleError
from edgeclip.formats.bundle import variant_towers, verify_bundle
from edgeclip.native import toolchain


@contextmanager
def extracted(bundle):
    """The verified bundle extracted into a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="edgeclip-run-") as tmp:
        folder = Path(tmp) / "bundle"
        manifest = verify_bundle(bundle, extract_to=folder)
        # The runner's subcommands read the manifest, as they do in a device install (which keeps it).
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        yield folder, manifest


def runner_command(folder: Path, manifest: dict, emulate: bool) -> list[str]:
    """How to start the bundle's runner here: directly, or through qemu-user."""
    arch = manifest["target"]["arch"]
    if arch != platform.machine() and not emulate:
        raise BundleError(f"this bundle is for {arch} but this machine is {platform.machine()}; "
                          "pass --emulate to run it under qemu-user, or run it on the device")
    # verify_bundle's schema made `runner` an executable member: nothing else is ever run.
    return toolchain.emulator_command(arch) + [str(folder / manifest["runner"])]


def run_runner(folder: Path, manifest: dict, args: list[str], emulate: bool = False, timeout_s: float = 600) -> dict:
    """Run the runner of an extracted bundle with `args`; its one JSON object."""
    cmd = runner_command(folder, manifest, emulate) + args
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise BundleError(f"the bundle runner did not finish within {timeout_s:.0f} s") from err
    if done.returncode != 0:
        raise BundleError(f"the bundle runner failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as err:
        raise BundleError(f"the bundle runner printed no JSON object: {done.stdout[-500:]!r}") from err


def profile(bundle, runs: int = 10, warmup: int = 2, module: str | None = None, emulate: bool = False,
            threads: int | None = None) -> dict:
    """Latency, load time, peak RSS and agreement with the reference, as the device reports them."""
    args = ["bench", "--runs", str(runs), "--warmup", str(warmup)]
    args += ["--variant", module] if module else []
    args += ["--threads", str(threads)] if threads else []
    with extracted(bundle) as (folder, manifest):
        return run_runner(folder, manifest, args, emulate)


def tower_outputs(bundle, inputs: dict[str, list[tuple[np.ndarray, ...]]], emulate: bool = False,
                  module: str | None = None) -> dict[str, list[np.ndarray]]:
    """The first output of each tower for each of its input tuples (one runner call per tuple)."""
    with extracted(bundle) as (folder, manifest):
        return _outputs(folder, manifest, inputs, emulate, module)


def _outputs(folder: Path, manifest: dict, inputs: dict[str, list[tuple[np.ndarray, ...]]], emulate: bool,
             module: str | None = None) -> dict[str, list[np.ndarray]]:
    results: dict[str, list[np.ndarray]] = {}
    module = module or next(iter(variant_towers(manifest)))  # the best variant; a CPU lacking it is refused
    with tempfile.TemporaryDirectory(prefix="edgeclip-io-") as io_dir:
        for tower, items in inputs.items():
            if tower not in variant_towers(manifest).get(module, {}):
                raise BundleError(f"this bundle has no {module} {tower} tower; rebuild it with --towers {tower}")
            for i, arrays in enumerate(items):
                paths = []
                for j, array in enumerate(arrays):
                    paths.append(str(Path(io_dir) / f"{tower}-{i}-{j}.npy"))
                    np.save(paths[-1], np.ascontiguousarray(array))
                run_runner(folder, manifest, ["bench", "--variant", module, "--tower", tower, "--runs", "1",
                                              "--warmup", "0", "--input", f"{tower}={','.join(paths)}",
                                              "--save-outputs", io_dir], emulate)
                results.setdefault(tower, []).append(np.load(Path(io_dir) / f"{module}-{tower}.npy"))
    return results


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = rows.reshape(rows.shape[0], -1).astype(np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def classify(bundle, image_path, labels: list[str], emulate: bool = False,
             module: str | None = None) -> list[tuple[str, float]]:
    """Zero-shot classification: (label, probability) best first, CLIP's softmax over 100·cosine."""
    return classify_images(bundle, [image_path], labels, emulate, module)[0]


def classify_images(bundle, image_paths: list, labels: list[str], emulate: bool = False,
                    module: str | None = None) -> list[list[tuple[str, float]]]:
    """`classify` for several images against one label set: the labels are embedded once.
    Images go through the preprocessing and labels through the tokenizer of the bundle's model
    family (`edgeclip.models.families`), with the tokenizer file the bundle carries."""
    with extracted(bundle) as (folder, manifest):
        family = manifest_family(manifest)
        images = [(family.image.pixels(read_image(path), manifest["preprocessing"]),) for path in image_paths]
        tokenize = _tokenizer(folder, manifest)
        out = _outputs(folder, manifest, {"image": images, "text": [tokenize(label) for label in labels]}, emulate,
                       module)
    text_embeddings = _unit(np.concatenate([t.reshape(1, -1) for t in out["text"]]))
    rankings = []
    for image in out["image"]:
        logits = 100.0 * (text_embeddings @ _unit(image).T)[:, 0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        rankings.append(sorted(zip(labels, probs.tolist(), strict=True), key=lambda pair: -pair[1]))
    return rankings


def embed_text(bundle, text: str, emulate: bool = False, module: str | None = None) -> np.ndarray:
    with extracted(bundle) as (folder, manifest):
        return _outputs(folder, manifest, {"text": [_tokenizer(folder, manifest)(text)]}, emulate, module)["text"][0]


def _tokenizer(folder: Path, manifest: dict):
    """text -> the text tower's inputs (ids, and the mask when the tower takes one), from the
    tokenizer file inside the bundle; bundles that carry none use this installation's."""
    if "tokenizer" not in manifest or "text" not in manifest.get("reference", {}):
        raise BundleError("this bundle has no text tower; rebuild it with --towers image,text")
    family, fields = manifest_family(manifest), manifest["tokenizer"]
    vocab = folder / fields["vocab"] if "vocab" in fields else family.text.installed_vocab()
    tokenize = family.text.tokenizer(vocab, fields)
    count = len(manifest["reference"]["text"]["inputs"])
    return lambda text: tokenize(text)[:count]
