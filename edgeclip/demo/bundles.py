"""Demo step 4: the student as bundles for this machine and for rpi4, and what they weigh.

A bundle is deterministic in its inputs (the checkpoint's bytes, the board, the baseline and the
edgeclip sources, which include the runner and the kernels), so it is built once and copied
from the demo cache afterwards.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from edgeclip.demo import cache
from edgeclip.errors import BundleError

# The board description to build for when the bundle should run on this machine itself: on x86-64
# the best single-family member of the fat `x86-64` target this CPU runs (one variant builds in
# half the time of the pair, and the demo runs it only here).
HOST_TARGETS = {"x86_64": "x86-64", "aarch64": "generic-aarch64"}
DEVICE_TARGET = "rpi4"


def host_target() -> str:
    machine = platform.machine()
    if machine not in HOST_TARGETS:
        raise BundleError(f"no board description runs on this {machine} machine; edgeclip builds for "
                          f"{', '.join(HOST_TARGETS)} hosts")
    from edgeclip.formats.cpu_features import from_flags
    from edgeclip.lower.target import cpu_features
    from edgeclip.targets import load_target

    members = load_target(HOST_TARGETS[machine]).variants
    if machine != "x86_64":
        return members[0].name
    flags = next((line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), "")
    have = set(from_flags("x86_64", flags))
    return next((m.name for m in members if set(cpu_features(m)) <= have), members[-1].name)


def build(checkpoint: Path, target: str, baseline: str | None, out_dir: Path) -> tuple[Path, bool]:
    """(bundle in `out_dir`, was_cached)."""
    from edgeclip.bundle.build import build_bundle

    entry_key = cache.key("bundle", "bundle", cache.tree_digest(checkpoint), checkpoint.name, target, baseline)
    folder, hit = cache.cached("bundles", entry_key,
                               lambda staging: build_bundle(checkpoint, target, staging, baseline=baseline))
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
