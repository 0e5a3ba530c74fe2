"""Static performance ESTIMATES for the ARM boards (not measurements; no board reaches this machine).

    .venv/bin/python bench/arm_model.py [--out FILE]

Method, the same on every CPU:
  1. compile each ternary linear of a tower for the board's TVM target (its kernel family),
  2. take the generated inner loop, the innermost loop holding the integer dot products
     (`sdot`, or `smull` on plain NEON; `vpdpbusd` on x86), and run it through LLVM 19's static
     analyser `llvm-mca-19` for the board's CPU model,
  3. multiply its cycles per iteration by its trip count (the kernel's multiply-accumulates over
     the loop body's), sum over the tower, divide by the board's clock.
llvm-mca-19 has no real Cortex-A72/A76/A78 models (they fall back to the Cortex-A57 one), so the
Cortex-A57 model stands for the Pi 4's A72 and the Neoverse-N1 model (the A76's server sibling)
for the Pi 5's A76 and the Orin's A78AE, as every row says.

Calibration: the same method on this x86 host's kernels (llvm-mca-19's Ice Lake server and Zen 5
models, cycles at the clock bench/peak.py measures), against the same kernels timed here, gives the model's error; the
estimates are reported raw and scaled by that error. Beside them: the same model's estimate of an
fp32 NEON GEMM of the same shapes (an 8x12 `fmla` register-blocked micro-kernel written here, the
shape hand-tuned BLAS kernels use), and ncnn's published fp32 ViT-B/32 times scaled to 224x224.

The rest of a tower (LayerNorm, softmax, GELU, attention matmuls, quantisation) is not modelled:
the tower estimate divides the kernels' by the ternary linears' share of the ternary tower measured
on the x86 host (HOST_TERNARY_SHARE) and splits it over the threads like the kernels; the worst
case, that rest kept serial, is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import peak

from edgeclip.fsutil import write_synced
from edgeclip.hostinfo import cpu_model
from edgeclip.lower.target import host_target

RESULTS = Path(__file__).resolve().parent / "results"
MCA = "llvm-mca-19"

# Ternary linears of the towers: (M, K, N, count). ViT-B/32 image tower: 12 layers of q, k, v, out
# (768->768), fc1, fc2 on 50 tokens, the patch convolution as a linear (49 patches, 3*32*32 -> 768)
# and the projection (class token, 768 -> 512). Text tower: 12 layers on 77 tokens, 512 wide.
TOWERS = {
    "image vit-b-32": [(50, 768, 768, 48), (50, 768, 3072, 12), (50, 3072, 768, 12), (49, 3072, 768, 1),
                       (1, 768, 512, 1)],
    "text 77 tokens": [(77, 512, 512, 48), (77, 512, 2048, 12), (77, 2048, 512, 12), (1, 512, 512, 1)],
}
# The ternary linears' share of the 1-thread ternary ViT-B/32 image tower on the AMD EPYC host
# (bench/tower_profile.py: 15.6 ms of 21.6 ms, the per-op profile quoted in issue #21).
HOST_TERNARY_SHARE = 15.6 / 21.6
# ncnn's benchmark/README.md, `vision_transformer` (ViT-B/32, fp32, 384x384): ms at 1 thread and at
# the thread count given; scaled to 224x224 by the token count, (224/32)^2 + 1 = 50 against
# (384/32)^2 + 1 = 145 (linear in tokens; attention, ~3 % of the work at 145 tokens, shrinks
# faster, so the scaled figure slightly overstates ncnn's 224x224 time).
NCNN_VIT_B32_384 = {"rpi4": (6606, 4, 1909), "rpi5": (1250, 4, 612), "orin-nano": (2482, 6, 629)}
TOKEN_SCALE = 50 / 145


@dataclass(frozen=True)
class Board:
    description: str
    target: str  # edgeclip target whose TVM target compiles the kernels
    mca_cpu: str  # llvm-mca-19 CPU model that stands for it
    ghz: float
    cores: int


BOARDS = {
    "rpi4": Board("Raspberry Pi 4 (4x Cortex-A72 @ 1.8 GHz)", "rpi4", "cortex-a57", 1.8, 4),
    "rpi5": Board("Raspberry Pi 5 (4x Cortex-A76 @ 2.4 GHz)", "rpi5", "neoverse-n1", 2.4, 4),
    "orin-nano": Board("Jetson Orin Nano (6x Cortex-A78AE @ 1.5 GHz)", "jetson-orin-nano", "neoverse-n1", 1.5, 6),
}

# Multiply-accumulates one instruction does, by mnemonic and (x86) register width.
MACS = {"sdot": 16, "smull": 8, "smull2": 8}
X86_MACS = {"vpdpbusd": {"zmm": 64, "ymm": 32}, "vpmaddubsw": {"zmm": 64, "ymm": 32}}

# llvm-mca-19 CPU models for the x86 calibration. LLVM 19's znver4/znver5 models cost a 512-bit
# vpdpbusd several times what Zen 5 takes (it issues two a cycle: bench/peak.py), so the Ice Lake
# server model, which also issues two, comes first; both errors are reported.
CALIBRATION_MODELS = ("icelake-server", "znver5")

FP32_GEMM_8X12 = "\n".join(
    ["ldp q0, q1, [x0], #32", "ldp q2, q3, [x1], #32", "ldr q4, [x1], #16"]
    + [f"fmla v{8 + r * 3 + c}.4s, v{2 + c}.4s, v{r // 4}.s[{r % 4}]" for r in range(8) for c in range(3)]
    + ["subs x2, x2, #1", "b.ne .Lgemm"]
)
FP32_GEMM_MACS = 8 * 12


def loops(asm: str, comment: str) -> list[tuple[int, int, list[str]]]:
    """(first, last, lines) of every loop in an assembly listing: a label to a branch back to it.
    `comment` starts a comment: `//` in aarch64 listings, `#` in x86 (AT&T) ones."""
    labels, lines = {}, []
    for raw in asm.splitlines():
        line = raw.split(comment)[0].strip()
        label = re.match(r"^([.\w$]+):", line)
        if label:
            labels[label.group(1)] = len(lines)
        elif line and not line.startswith("."):
            lines.append(line)
    found = []
    for i, line in enumerate(lines):
        mnemonic, _, operands = line.replace("\t", " ").partition(" ")
        start = labels.get(operands.split(",")[-1].strip(), i + 1)
        if mnemonic.startswith(("b", "cb", "tb", "j")) and start <= i:
            found.append((start, i, lines[start:i + 1]))
    return found


def macs_of(line: str) -> int:
    mnemonic, _, operands = line.replace("\t", " ").partition(" ")
    if mnemonic in X86_MACS:
        return next((n for width, n in X86_MACS[mnemonic].items() if f"%{width}" in operands), 0)
    return MACS.get(mnemonic, 0)


def mac_loop(asm: str, comment: str) -> tuple[list[str], int]:
    """The innermost loop holding dot products, and its multiply-accumulates an iteration."""
    every = loops(asm, comment)
    found = [(lines, sum(map(macs_of, lines))) for first, last, lines in every
             if not any(o[0] >= first and o[1] <= last and (o[0], o[1]) != (first, last) for o in every)]
    found = [(lines, macs) for lines, macs in found if macs]
    if not found:
        raise SystemExit("no inner loop with integer dot products in the generated assembly")
    return max(found, key=lambda item: item[1])


def mca_cycles_per_iteration(body: list[str], triple: str, cpu: str, iterations: int = 200) -> float:
    """llvm-mca-19's steady-state cycles for one iteration of `body` on `cpu`."""
    source = ".Lloop:\n" + "\n".join(body) + "\n"
    result = subprocess.run([MCA, f"-mtriple={triple}", f"-mcpu={cpu}", f"-iterations={iterations}"],
                            input=source, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{MCA} failed on the loop body: {result.stderr.strip()[:400]}")
    return int(re.search(r"Total Cycles:\s+(\d+)", result.stdout).group(1)) / iterations


def mca_version() -> str:
    text = subprocess.run([MCA, "--version"], capture_output=True, text=True).stdout
    return next((line.strip() for line in text.splitlines() if "LLVM version" in line), MCA)


def compile_kernel(target_name: str, M: int, K: int, N: int):
    import tvm

    from edgeclip.schedules.family import load_family
    from edgeclip.schedules.ternary import LinearShape
    from edgeclip.targets import load_target

    target = load_target(target_name)
    family = load_family(target.kernel_family)
    func = family.linear_primfunc(LinearShape(M, K, N, "channel", "int8", True), 1)
    return tvm.compile(tvm.IRModule({"ternary_linear": func}), target=target.tvm_cpu), family


def kernel_estimate(target_name: str, triple: str, cpu: str, M: int, K: int, N: int) -> dict:
    lib, _ = compile_kernel(target_name, M, K, N)
    body, macs = mac_loop(lib.mod.inspect_source("asm"), "#" if triple.startswith("x86") else "//")
    cycles = mca_cycles_per_iteration(body, triple, cpu)
    trips = M * K * N / macs
    return {"M": M, "K": K, "N": N, "loop_instructions": len(body), "macs_per_iteration": macs,
            "cycles_per_iteration": cycles, "trips": trips, "cycles": cycles * trips}


def measured_x86_seconds(M: int, K: int, N: int, repeat: int = 20) -> float:
    """The same x86 kernel timed here, 1 thread, warm (median of `repeat` timings)."""
    import tvm

    lib, family = compile_kernel(host_target(), M, K, N)
    rng = np.random.default_rng(0)
    trits = rng.integers(-1, 2, (N, K)).astype(np.int8)
    args = [rng.standard_normal((M, K)).astype(np.float32), *family.pack_weights(trits, "int8"),
            np.ones(N, np.float32), np.zeros(N, np.float32), np.zeros((M, N), np.float32)]
    tensors = [tvm.runtime.tensor(a) for a in args]
    timer = lib.mod.time_evaluator("ternary_linear", tvm.cpu(), number=10, repeat=repeat)
    return float(np.median(timer(*tensors).results))


def tower_estimate(kernels: list[dict], counts: list[int], board: Board, threads: int, error: float) -> dict:
    """Milliseconds for one tower: its ternary kernels, plus the rest of the tower from the host's
    share; both split over `threads` cores, and beside it the rest kept serial (the worst case)."""
    kernel_ms = 1e3 * sum(k["cycles"] * n for k, n in zip(kernels, counts, strict=True)) / (board.ghz * 1e9)
    rest_ms = kernel_ms * (1 / HOST_TERNARY_SHARE - 1)
    tower_ms = (kernel_ms + rest_ms) / threads
    return {"threads": threads, "kernels_ms": kernel_ms / threads, "rest_ms": rest_ms / threads,
            "tower_ms": tower_ms, "tower_ms_calibrated": tower_ms * error,
            "tower_ms_rest_serial": kernel_ms / threads + rest_ms}


def fp32_gemm_ms(shapes: list[tuple], board: Board, threads: int) -> float:
    body = FP32_GEMM_8X12.splitlines()
    cycles = mca_cycles_per_iteration(body, "aarch64", board.mca_cpu)
    macs = sum(M * K * N * n for M, K, N, n in shapes)
    return 1e3 * cycles * macs / FP32_GEMM_MACS / (board.ghz * 1e9) / threads


def calibrate(shapes: list[tuple]) -> dict:
    """The method on this host's kernels against their timings: measured / estimated, for each of
    CALIBRATION_MODELS (the first is the one the estimates are scaled by)."""
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(0, 1)
    family = peak.family_of_this_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        ghz = peak.measure(peak.compile_probe(family, Path(tmp)), family, 1, 3)["core_ghz"]
    measured = [1e6 * measured_x86_seconds(M, K, N) for M, K, N, _ in shapes]
    models = {}
    for mca_cpu in CALIBRATION_MODELS:
        rows = [kernel_estimate(host_target(), "x86_64", mca_cpu, M, K, N) for M, K, N, _ in shapes]
        for row, us in zip(rows, measured, strict=True):
            row.update(estimated_us=1e6 * row["cycles"] / (ghz * 1e9), measured_us=us)
        models[mca_cpu] = {"kernels": rows, "error": sum(measured) / sum(r["estimated_us"] for r in rows)}
    return {"cpu": cpu_model(), "core_ghz": ghz, "models": models, "error": models[CALIBRATION_MODELS[0]]["error"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "arm-model.json", help="JSON file")
    args = parser.parse_args()
    if not shutil.which(MCA):
        sys.exit(f"{MCA} not found: install Debian's llvm-19 (make bench-setup does)")
    calibration = calibrate(TOWERS["image vit-b-32"][:3])
    print(f"x86 calibration ({calibration['cpu']}, llvm-mca {CALIBRATION_MODELS[0]}): measured / estimated = "
          f"{calibration['error']:.2f}")
    boards = {}
    for name, board in BOARDS.items():
        towers = {}
        for tower, shapes in TOWERS.items():
            kernels = [kernel_estimate(board.target, "aarch64", board.mca_cpu, M, K, N) for M, K, N, _ in shapes]
            counts = [n for *_, n in shapes]
            towers[tower] = {
                "kernels": kernels,
                "estimates": [tower_estimate(kernels, counts, board, t, calibration["error"]) for t in (1, 4)],
                "fp32_neon_gemm_ms": {t: fp32_gemm_ms(shapes, board, t) for t in (1, 4)},
            }
        one, threads, many = NCNN_VIT_B32_384[name]
        boards[name] = {"description": board.description, "mca_cpu": board.mca_cpu, "ghz": board.ghz,
                        "towers": towers, "ncnn_fp32_vit_b32_224_ms": {"1": one * TOKEN_SCALE,
                                                                       str(threads): many * TOKEN_SCALE}}
        image = towers["image vit-b-32"]["estimates"]
        print(f"{name}: ESTIMATE image tower {image[0]['tower_ms']:.0f} ms at 1 thread, "
              f"{image[1]['tower_ms']:.0f} ms at 4 (calibrated {image[1]['tower_ms_calibrated']:.0f})")
    report = {"meta": {"host": platform.node(), "cpu": cpu_model(), "load_average": os.getloadavg(),
                       "llvm_mca": mca_version(),
                       "host_ternary_share": HOST_TERNARY_SHARE, "command": "python bench/arm_model.py",
                       "note": "static estimates from llvm-mca, not measurements on a board"},
              "calibration": calibration, "boards": boards}
    partial = args.out.with_suffix(".part")
    write_synced(partial, (json.dumps(report, indent=1) + "\n").encode())
    os.replace(partial, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
