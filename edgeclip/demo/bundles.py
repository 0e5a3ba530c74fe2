"""Demo step 4: the student as bundles for this machine and for rpi4, and what they weigh.

A bundle is deterministic in its inputs (the checkpoint's bytes, the board, the baseline and the
edgeclip sources, which include the runner and the kernels), so it is built once and copied
from the demo cache afterwards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeclip.demo import cache

DEVICE_TARGET = "rpi4"


def build(checkpoint: Path, target: str, baseline: str | None, out_dir: Path, seq_len: int | None = None,
          batches: tuple[int, ...] | None = None) -> tuple[Path, bool]:
    """(bundle in `out_dir`, was_cached); `seq_len`: a sentence encoder's token context; `batches`:
    the compiled batch sizes (default build's)."""
    from edgeclip.bundle.build import DEFAULT_BATCHES, build_bundle

    batches = batches or DEFAULT_BATCHES
    entry_key = cache.key("bundle", "bundle", cache.tree_digest(checkpoint), checkpoint.name, target, baseline, seq_len,
                          batches)
    folder, hit = cache.cached("bundles", entry_key, lambda staging: build_bundle(
        checkpoint, target, staging, baseline=baseline, seq_len=seq_len, batches=batches))
    (built,) = folder.glob("*.edgeclip")
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, out_dir / built.name)
    return out_dir / built.name, hit


def sizes(bundle: Path, fp32_weights_bytes: int) -> dict:
    """Whole tar, the ternary payload and the fp32 figure it is compared with (the bundled fp32
    baseline's payload when there is one, else the fp32 weights)."""
    from edgeclip.formats.bundle import payload_bytes, read_manifest

    manifest = read_manifest(bundle)
    ternary = payload_bytes(manifest, "ternary")
    fp32 = payload_bytes(manifest, "fp32")
    return {
        "bundle_bytes": bundle.stat().st_size,
        "ternary_payload_bytes": ternary,
        "fp32_payload_bytes": fp32 or None,
        "fp32_weights_bytes": fp32_weights_bytes,
        "payload_smaller_than_fp32_weights": fp32_weights_bytes / ternary,
        "payload_smaller_than_fp32_payload": fp32 / ternary if fp32 else None,
    }
