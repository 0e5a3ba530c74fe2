"""Demo step 6: measure the bundles with their own native runner.

The host bundle runs here, so its figures are real (for this machine). The rpi4 bundle needs an
aarch64 board: the demo tries, in order, the emulated board of `edgeclip.testbed` (Debian arm64
userland under qemu-user behind sshd in a network namespace, profiled over SSH exactly as a real
Pi would be), then the runner under qemu-user directly (`edgeclip run --emulate`), and says why it
skipped each. Either way the emulated timings check correctness only: qemu is no Cortex-A72.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from edgeclip import console
from edgeclip.bundle import local

QEMU = "qemu-aarch64"


class NoEmulator(Exception):
    """Neither way of running an aarch64 bundle works here; the message says why."""


def host(bundle: Path, runs: int, threads: int) -> dict:
    """{"modules": {variant: figures}, "ratios": fp32 / ternary}, as `edgeclip profile` reports them."""
    return _as_profile(bundle, local.profile(bundle, runs=runs, threads=threads))


def torch_fp32(checkpoint: Path, runs: int, warmup: int = 2) -> dict:
    """Latency of the float model in PyTorch eager on the towers and input shapes the bundle has
    (batch 1, one image + one text): what the model costs here without edgeclip. The bundle's
    own fp32 module is TVM's untuned compile, far slower than this."""
    import numpy as np
    import torch

    from edgeclip.models.sources import open_model

    model, family = open_model(str(checkpoint))
    towers = family.towers(model)
    inputs = {name: tuple(spec.example() for spec in tower.inputs) for name, tower in towers.items()}
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            began = time.perf_counter()
            for name, tower in towers.items():
                tower.module(*inputs[name])
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - began))
    return {"latency_ms": {q: float(np.percentile(times, int(q[1:]))) for q in ("p50", "p90", "p99")},
            "threads": torch.get_num_threads(), "runs": runs}


def emulated(bundle: Path, runs: int, report_dir: Path, say) -> dict:
    """{"mode", "reasons" (why earlier modes were not used), "result" (runner figures)}."""
    reasons = []
    why_not = _testbed_missing()
    if why_not is None:
        try:
            return {"mode": "emulated board over SSH", "reasons": reasons,
                    "result": _over_ssh(bundle, runs, report_dir, say)}
        except Exception as err:  # noqa: BLE001 - any failure of the optional test bed falls back to qemu
            why_not = f"the emulated board failed: {type(err).__name__}: {err}"
    reasons.append(f"not over SSH: {why_not}")
    say(f"  {reasons[-1]}; trying qemu-user directly")
    if shutil.which(QEMU) is None:
        reasons.append(f"not under qemu-user: {QEMU} is not installed (apt-get install qemu-user)")
        raise NoEmulator("; ".join(reasons))
    return {"mode": "qemu-user (edgeclip run --emulate)", "reasons": reasons,
            "result": _as_profile(bundle, local.profile(bundle, runs=runs, emulate=True))}


def _as_profile(bundle: Path, report: dict) -> dict:
    """The local runner's JSON (ternary, fp32 under "baseline") in the shape of a remote profile."""
    from dataclasses import asdict

    from edgeclip.formats.bundle import output_floor, read_manifest
    from edgeclip.remote.profile import ModuleProfile, ratios

    manifest = read_manifest(bundle)
    measured = {}
    for figures in (report, report.get("baseline")):
        if figures:
            measured[figures["module"]] = ModuleProfile(
                module=figures["module"], load_ms=float(figures["load_ms"]),
                latency_ms={q: float(figures["latency_ms"][q]) for q in ("p50", "p90", "p99")},
                peak_rss_kb=int(figures["peak_rss_kb"]), cosine_to_reference=float(figures["cosine_to_reference"]),
                min_cosine=output_floor(manifest, figures["module"]))
    return {"modules": {name: {**asdict(m), "output_ok": m.output_ok} for name, m in measured.items()},
            "ratios": ratios(measured)}


def _testbed_missing() -> str | None:
    try:
        from edgeclip.testbed import devices
    except ImportError as err:
        return f"the test bed cannot load ({err})"
    return devices.missing_for_arm64()


def _over_ssh(bundle: Path, runs: int, report_dir: Path, say) -> dict:
    """Start the emulated board, deploy + profile over SSH, write the remote report; tear down."""
    from edgeclip.remote.profile import profile
    from edgeclip.remote.report import write_report
    from edgeclip.testbed import devices, rootfs

    if not any(rootfs.cache_dir().glob("rootfs-arm64-*/.complete")):
        say("  preparing the arm64 userland once (apt-get download of Debian arm64 packages, ~10 MB)")
    with tempfile.TemporaryDirectory(prefix="edgeclip-demo-board-") as tmp, \
            devices.arm64_device(Path(tmp) / "board") as (device, _):
        say(f"  emulated board up at {device.spec}; deploying and profiling")
        result = profile(bundle, device.spec, device.options(), runs=runs,
                         progress=_upload_bar())
    write_report(result, report_dir)
    return result.as_dict()


def _upload_bar():
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int, rate: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="  upload", leave=False,
                       file=console.stream())
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress
