"""Demo step: the rpi4 bundle used as an application on the board would use it. Its own runner,
under qemu-user, classifies the demo's images with the on-device decoder, preprocessing and
tokenizer (one process for all the images and labels), beside PyTorch's answers for the same files,
and embeds the images folder into one .npy, compared with the PyTorch image tower.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from edgeclip.demo import predict
from edgeclip.demo.steps import Skip
from edgeclip.errors import ToolchainError
from edgeclip.formats.runner_inputs import folder_images
from edgeclip.native.toolchain import emulator_command

EMBEDDINGS = "device-embeddings.npy"


def use_on_board(bundle: Path, rows: list[dict], images: Path, checkpoint: Path, run: Path) -> dict:
    """{"classify": rows with the device's top-1, "agree": count, "embed": count, dim, cosines}."""
    from edgeclip.bundle.runner_modes import run_mode

    try:
        emulator_command("aarch64")
    except ToolchainError as err:
        raise Skip(str(err)) from err
    names = predict.classes()
    answers = io.StringIO()
    run_mode(bundle, "classify", ["--image", *(row["path"] for row in rows), "--labels", ",".join(names),
                                  "--prompt", predict.PROMPT, "--top", "1"], emulate=True, out=answers)
    device = [json.loads(line)["top"][0] for line in answers.getvalue().splitlines()]
    classified = [{"name": row["name"], "truth": row["truth"], "device": top["label"], "device_p": top["p"],
                   "torch": row["torch"], "torch_p": row["torch_p"]} for row, top in zip(rows, device, strict=True)]

    out = run / EMBEDDINGS
    summary = io.StringIO()
    run_mode(bundle, "embed", ["--image", str(images), "--out", str(out)], emulate=True, out=summary)
    embeddings = np.load(out)
    files = [images / name for name in folder_images(images)]
    expected = predict.torch_image_embeddings(predict.dual_encoder(checkpoint), [str(p) for p in files])
    cosines = np.sum(embeddings.astype(np.float64) * expected, axis=1)
    return {"classify": classified, "agree": sum(r["device"] == r["torch"] for r in classified),
            "embed": {"file": EMBEDDINGS, "count": int(embeddings.shape[0]), "dim": int(embeddings.shape[1]),
                      "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean())}}
