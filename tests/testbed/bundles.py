"""Synthetic bundles for the remote FAULT tests (link outages, packet drop, rate limits, full disks,
out of memory), built with the real bundle writer.

Their `bin/edgeclip-runner` is a TEST STAND-IN for the native runner, kept only where a test needs
a fast, controllable runner: bundle size and runner memory are chosen per test, and it starts in
milliseconds where the real runner under qemu-user takes seconds. The profile path on the emulated
board uses a real compiled rpi4 bundle and the native runner (test_remote_arm64.py). The stand-in
is a POSIX shell script that keeps the runner's contract (`bench --runs N --variant M`, one JSON object
with module, load_ms, latency_ms p50/p90/p99, peak_rss_kb, cosine_to_reference) and does real
work on the device: it loads the module's weights into memory, hashes them N times timing each run
with `date +%s%N`, reads its own VmHWM, and checks the weights against a reference hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgeclip.formats.bundle import write_bundle

STAND_IN_RUNNER = r"""#!/bin/sh
# TEST STAND-IN for the native edgeclip runner (tests/testbed/bundles.py); same CLI and JSON contract.
set -eu
[ "${1:-}" = bench ] || { echo "edgeclip-runner: no mode given; this stand-in has only bench" >&2; exit 2; }
shift
runs=10 module=ternary
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --variant) module=$2; shift 2 ;;
    *) echo "edgeclip-runner: unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
weights=$root/model/$module.bin
[ -r "$weights" ] || { echo "edgeclip-runner: no module $module" >&2; exit 3; }
ms() { printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)); }
start=$(date +%s%N)
model=$(od -An -tx1 -v "$weights")
loaded=$(date +%s%N)
times=
i=0
while [ "$i" -lt "$runs" ]; do
  t0=$(date +%s%N)
  digest=$(printf '%s' "$model" | sha256sum)
  t1=$(date +%s%N)
  times="$times $((t1 - t0))"
  i=$((i + 1))
done
sorted=$(printf '%s\n' $times | sort -n)
pick() { n=$(( ($1 * runs + 99) / 100 )); [ "$n" -ge 1 ] || n=1; printf '%s\n' "$sorted" | sed -n "${n}p"; }
expected=$(cat "$root/model/$module.ref")
cosine=0.0
[ "${digest%% *}" = "$expected" ] && cosine=1.0
hwm=0
while read -r key value _; do [ "$key" = "VmHWM:" ] && hwm=$value; done < /proc/self/status
printf '{"module": "%s", "load_ms": %s, "latency_ms": {"p50": %s, "p90": %s, "p99": %s}, "peak_rss_kb": %s, "cosine_to_reference": %s}\n' \
  "$module" "$(ms $((loaded - start)))" "$(ms "$(pick 50)")" "$(ms "$(pick 90)")" "$(ms "$(pick 99)")" "$hwm" "$cosine"
"""


def _reference(weights: bytes) -> str:
    """What the stand-in computes: sha256 of `od -An -tx1 -v` of the weights (no trailing newline)."""
    rows = [weights[i : i + 16] for i in range(0, len(weights), 16)]
    text = "\n".join(" " + " ".join(f"{b:02x}" for b in row) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def make_bundle(
    path: Path,
    *,
    name: str = "tiny-clip",
    arch: str = "x86_64",
    target: str = "x86-64",
    ternary_bytes: int = 64 * 1024,
    fp32_bytes: int = 256 * 1024,
    runner: str = STAND_IN_RUNNER,
    extra: dict[str, bytes] | None = None,
    seed: int = 0,
    plan: str | None = None,
) -> Path:
    """`plan`: a runner.plan to carry (its variant lines are what the deploy probe checks)."""
    files = {"bin/edgeclip-runner": runner.encode()}
    for module, size in (("ternary", ternary_bytes), ("fp32", fp32_bytes)):
        weights = _random_bytes(size, seed, module)
        files[f"model/{module}.bin"] = weights
        files[f"model/{module}.ref"] = _reference(weights).encode()
    files.update(extra or {})
    if plan is not None:
        files["runner.plan"] = plan.encode()
    variants = [{"name": module, "precision": module, "kernel_family": "stand_in", "device": "cpu", "cpu_features": [],
                 "towers": {"model": {"path": f"model/{module}.bin"}}} for module in ("ternary", "fp32")]
    manifest = {"name": name, "target": {"name": target, "arch": arch, "cpu_features": []},
                "runner": "bin/edgeclip-runner", "variants": variants,
                **({"runner_plan": "runner.plan"} if plan is not None else {})}
    return write_bundle(path, manifest, files, executables=frozenset({"bin/edgeclip-runner"}))


def _random_bytes(size: int, seed: int, label: str) -> bytes:
    """Incompressible, reproducible content (so transfer and hash checks are not trivially easy)."""
    blocks = [hashlib.sha256(f"{seed}:{label}:{i}".encode()).digest() for i in range((size + 31) // 32)]
    return b"".join(blocks)[:size]
