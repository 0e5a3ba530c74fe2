"""What ran a benchmark, stored beside its figures (machines vary between runs: CPU and ISA flags,
load, time and the edgeclip commit say which numbers may be compared), the key cached bundles are
kept under, and the one way results are written."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from edgeclip.fsutil import write_synced

ROOT = Path(__file__).resolve().parent.parent
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "asimddp")


def host() -> dict:
    """What ran the benchmark: CPU, its relevant ISA flags, cores, load, time and edgeclip commit."""
    lscpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                                               check=True).stdout.splitlines() if ":" in line)
    flags = set(lscpu.get("Flags", "").split())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "edgeclip", "schedules", "targets"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    return {"cpu": lscpu.get("Model name", platform.processor()).strip(), "machine": platform.machine(),
            "cpu_flags": [f for f in CPU_FLAGS if f in flags], "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "edgeclip_commit": commit + ("-dirty" if dirty else "")}


def source_key() -> str:
    """The committed trees a bundle is built from: a bundle cached under another key is stale."""
    trees = subprocess.run(["git", "rev-parse", "HEAD:edgeclip", "HEAD:schedules", "HEAD:targets"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    return "-".join(tree[:10] for tree in trees)


def save(result: dict, name: str) -> None:
    """`result` as bench/results/NAME, written atomically, and printed."""
    out = Path(__file__).with_name("results") / name
    partial = out.with_suffix(".json.part")
    write_synced(partial, (json.dumps(result, indent=1) + "\n").encode())
    os.replace(partial, out)
    print(json.dumps(result, indent=1))
