"""This CPU's int8 dot-product peak (not a test): the yardstick for the kernels' efficiency.

    .venv/bin/python bench/peak.py [--threads 1,2] [--repeats 5] [--out FILE]

A C program (compiled here with `cc`) runs a tight loop of the kernel family's instruction over 12
independent accumulators, so neither latency nor loads limit it:
  - AVX-512 VNNI: `vpdpbusd zmm` (64 u8 x s8 multiply-accumulates an instruction);
  - AVX2: `vpmaddubsw ymm` + `vpmaddwd ymm` (by ones, to widen) + `vpaddd`, the sequence the
    x86_avx2 kernels use (32 multiply-accumulates a group).
Each run does 2·10^10 multiply-accumulates a thread. The core clock is measured in the same process
by a chain of dependent `add`s (1 cycle each) just before and just after each timed loop (the
higher is kept), so MAC/cycle does not assume the nominal frequency (the TSC runs at that, not at
the boost clock); the efficiency figures elsewhere use MAC/s, which needs no clock. Writes
bench/results/peak-<cpu>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeclip.fsutil import write_synced
from edgeclip.hostinfo import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
ACCUMULATORS = 12
MACS_PER_THREAD = 20_000_000_000  # >= 10^9, and long enough (tens of ms) to time well

# One loop body a family: `n` iterations, each ACCUMULATORS independent accumulations.
FAMILIES = {
    "avx512_vnni": {
        "instruction": "vpdpbusd zmm",
        "macs_per_group": 64,
        "body": "".join(f'"vpdpbusd %%zmm30, %%zmm31, %%zmm{i}\\n"' for i in range(ACCUMULATORS)),
        "clobbers": ", ".join(f'"zmm{i}"' for i in range(ACCUMULATORS)),
        "setup": '"vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\\n" "vpabsb %%zmm30, %%zmm31\\n"',
        "setup_clobbers": '"zmm30", "zmm31"',
        "cflags": ["-mavx512f", "-mavx512bw", "-mavx512vnni"],
    },
    "avx2": {
        "instruction": "vpmaddubsw + vpmaddwd ymm",
        "macs_per_group": 32,
        # acc_i += maddwd(maddubs(a, b), ones), with four temporaries in rotation
        "body": "".join(f'"vpmaddubsw %%ymm9, %%ymm8, %%ymm{12 + i % 4}\\n"'
                        f'"vpmaddwd %%ymm10, %%ymm{12 + i % 4}, %%ymm{12 + i % 4}\\n"'
                        f'"vpaddd %%ymm{12 + i % 4}, %%ymm{i}, %%ymm{i}\\n"' for i in range(8)),
        "clobbers": ", ".join(f'"ymm{i}"' for i in (*range(8), 12, 13, 14, 15)),
        "setup": '"vpcmpeqb %%ymm8, %%ymm8, %%ymm8\\n" "vpabsb %%ymm8, %%ymm9\\n" "vpabsw %%ymm8, %%ymm10\\n"',
        "setup_clobbers": '"ymm8", "ymm9", "ymm10"',
        "groups": 8,
        "cflags": ["-mavx2"],
    },
}

PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* 1000 dependent adds an iteration: 1000 cycles at 1 cycle of latency each. */
static void add_chain(long n) {
  long x = 0;
  __asm__ volatile("1:\n" ".rept 1000\n" "add $1, %0\n" ".endr\n" "dec %1\n" "jnz 1b\n"
                   : "+r"(x), "+r"(n) : : "cc");
}

static double clock_ghz(void) {
  long chain = 2000000;
  double t0 = now();
  add_chain(chain);
  return chain * 1000.0 / (now() - t0) / 1e9;
}

static void dot_loop(long n) {
  __asm__ volatile(SETUP "1:\n" BODY "dec %0\n" "jnz 1b\n" : "+r"(n) : : CLOBBERS, SETUP_CLOBBERS, "cc");
}

static long iterations;
static void *worker(void *arg) { (void)arg; dot_loop(iterations); return NULL; }

int main(int argc, char **argv) {
  int threads = atoi(argv[1]);
  iterations = atol(argv[2]);
  double ghz = clock_ghz();
  pthread_t ids[64];
  double t0 = now();
  for (int i = 1; i < threads; i++) pthread_create(&ids[i], NULL, worker, NULL);
  dot_loop(iterations);
  for (int i = 1; i < threads; i++) pthread_join(ids[i], NULL);
  double seconds = now() - t0, after = clock_ghz();
  printf("%.9f %.4f\n", seconds, after > ghz ? after : ghz);
  return 0;
}
"""


def family_of_this_cpu() -> str:
    """The best int8 dot-product family /proc/cpuinfo lists (the x86_avx512 or x86_avx2 kernels' own)."""
    flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    if {"avx512_vnni", "avx512bw"} <= flags:
        return "avx512_vnni"
    if "avx2" in flags:
        return "avx2"
    sys.exit("bench/peak.py: this CPU has neither AVX2 nor AVX-512 VNNI; there is no x86 int8 kernel family to measure")


def compile_probe(family: str, folder: Path) -> Path:
    spec = FAMILIES[family]
    source, binary = folder / "peak.c", folder / "peak"
    source.write_text(PROGRAM)
    subprocess.run(["cc", "-O2", "-pthread", *spec["cflags"], f"-DBODY={spec['body']}", f"-DSETUP={spec['setup']}",
                    f"-DCLOBBERS={spec['clobbers']}", f"-DSETUP_CLOBBERS={spec['setup_clobbers']}",
                    str(source), "-o", str(binary)], check=True)
    return binary


def measure(binary: Path, family: str, threads: int, repeats: int) -> dict:
    """Best-of-`repeats` MAC/s for `threads` threads, each doing MACS_PER_THREAD multiply-accumulates."""
    spec = FAMILIES[family]
    macs_per_iteration = spec["macs_per_group"] * spec.get("groups", ACCUMULATORS)
    iterations = -(-MACS_PER_THREAD // macs_per_iteration)
    runs = []
    for _ in range(repeats):
        seconds, ghz = map(float, subprocess.run([str(binary), str(threads), str(iterations)], check=True,
                                                 capture_output=True, text=True).stdout.split())
        runs.append((seconds, ghz))
    seconds, ghz = min(runs)
    macs = macs_per_iteration * iterations * threads
    return {"threads": threads, "macs": macs, "seconds": seconds, "seconds_median": statistics.median(r[0] for r in runs),
            "mac_per_s": macs / seconds, "core_ghz": ghz, "mac_per_cycle_per_core": macs / seconds / threads / (ghz * 1e9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="thread counts to measure (default 1,2)")
    parser.add_argument("--repeats", type=int, default=5, help="runs a thread count; the best is kept (default 5)")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/peak-<cpu>.json)")
    args = parser.parse_args()
    if platform.machine() != "x86_64":
        sys.exit("bench/peak.py measures x86-64 hosts; ARM peaks come from bench/arm_model.py's estimates")
    family = family_of_this_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        binary = compile_probe(family, Path(tmp))
        results = [measure(binary, family, int(n), args.repeats) for n in args.threads.split(",")]
    cpu = cpu_model()
    report = {"meta": {"host": platform.node(), "cpu": cpu, "family": family, "instruction": FAMILIES[family]["instruction"],
                       "accumulators": ACCUMULATORS, "load_average": os.getloadavg(),
                       "command": "python bench/peak.py " + " ".join(sys.argv[1:])},
              "results": results}
    out = args.out or RESULTS / f"peak-{re.sub(r'[^a-z0-9]+', '-', cpu.lower()).strip('-')[:40]}.json"
    partial = out.with_suffix(".part")
    write_synced(partial, (json.dumps(report, indent=2) + "\n").encode())
    os.replace(partial, out)
    for row in results:
        print(f"{row['threads']} thread(s): {row['mac_per_s'] / 1e9:.1f} GMAC/s, {row['core_ghz']:.2f} GHz, "
              f"{row['mac_per_cycle_per_core']:.1f} MAC/cycle/core ({FAMILIES[family]['instruction']})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
