"""Ternary linear kernels vs fp32 and int8 peers on this host (not a test).

usage: python bench/kernels.py [--quick] [--threads 1,2] [--rounds 7]

Every method of one shape is timed in the same run, interleaved: each round times every method
once, and the table reports the median over rounds (the cores are shared with other jobs, so
sequential timings drift apart). Writes bench/results/kernels-<cpu>.json and
bench/results/kernels.md.

Methods: ternary int8 activations (2-bit packed weights; the same kernel with int8 weights, to
measure what packing saves when weights come from DRAM), ternary fp32 activations, TVM fp32
dense with a register-blocked schedule, torch fp32 `F.linear`, torch dynamic int8
(`quantize_dynamic`, fbgemm), numpy. "cold" flushes 64 MB of cache before every call.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import tvm
from tvm import s_tir, te

from edgeclip.schedules import x86, x86_avx2, x86_avx512
from edgeclip.schedules.ternary import pack_weights, unpacked_weights

SHAPES = [(512, 512), (512, 2048), (2048, 512), (768, 768), (768, 3072), (3072, 768)]
ROWS = [1, 50, 77, 197]
QUICK = [(1, 768, 3072), (1, 3072, 768), (50, 768, 3072), (50, 3072, 768)]
FLUSH = 64 << 20  # bytes evicted before each cold-cache call
SAMPLE_S = 0.001  # a warm sample repeats calls up to ~1 ms: short enough to dodge most preemptions


def cpu_name() -> str:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", text)
    return re.sub(r"[^A-Za-z0-9]+", "-", model.group(1) if model else platform.machine()).strip("-").lower()


def family():
    return x86_avx512 if re.search(r"\bavx512_vnni\b", Path("/proc/cpuinfo").read_text()) else x86_avx2


def fp32_dense(M, K, N, target, threads, lanes=16, rows=4):
    """TVM fp32 dense, hand schedule: weights pre-laid [N/lanes, K, lanes], register block rows x lanes."""
    x = te.placeholder((M, K), name="x")
    w = te.placeholder((N // lanes, K, lanes), name="w")
    k = te.reduce_axis((0, K), name="k")
    y = te.compute((M, N), lambda m, n: te.sum(x[m, k] * w[n // lanes, k, n % lanes], axis=k), name="y")
    sch = s_tir.Schedule(te.create_prim_func([x, w, y]))
    blk = sch.get_sblock("y")
    store = sch.cache_write(blk, 0, "local")  # blk now accumulates in local; store writes y
    m, n = sch.get_loops(store)
    rows = max(b for b in range(1, rows + 1) if M % b == 0)
    mo, mi = sch.split(m, [None, rows])
    no, ni = sch.split(n, [None, lanes])
    sch.reorder(no, mo, mi, ni)
    sch.compute_at(blk, mo, preserve_unit_loops=True)
    cm, cn, ck = sch.get_loops(blk)[-3:]
    sch.reorder(ck, cm, cn)
    sch.unroll(cm)
    sch.vectorize(cn)
    sch.vectorize(ni)
    if threads > 1:
        sch.parallel(no)
    sch.decompose_reduction(blk, ck)
    return tvm.compile(sch.mod, target=target)


def tvm_sampler(lib, args, cold: bool):
    """A callable returning seconds per call: one sample of a TVM function."""
    lib["main"](*args)
    once = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=1)
    per_call = once(*args).mean
    number = 1 if cold else max(1, int(SAMPLE_S / max(per_call, 1e-7)))
    ev = lib.mod.time_evaluator("main", tvm.cpu(), number=number, repeat=1, cache_flush_bytes=FLUSH if cold else 0)
    return lambda: ev(*args).mean


def py_sampler(f):
    f()
    t = time.perf_counter()
    f()
    number = max(1, int(SAMPLE_S / max(time.perf_counter() - t, 1e-7)))

    def sample():
        f()  # warm, as time_evaluator does before it times
        t = time.perf_counter()
        for _ in range(number):
            f()
        return (time.perf_counter() - t) / number

    return sample


def build(func, target):
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def samplers(M, K, N, threads, fam) -> dict:
    """Every method of one shape, as name -> callable returning seconds per call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale, bias = rng.uniform(0.01, 1, N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    W = (T * scale[:, None]).astype(np.float32)
    target = fam.target(threads)
    packed = pack_weights(T, fam.TILE_N)
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
    tensors = lambda *arrays: [tvm.runtime.tensor(a) for a in arrays] + [out]  # noqa: E731
    int8_args = tensors(x, packed["w_packed"], packed["w_sum"], scale, bias)
    int8 = build(fam.linear_primfunc(M, K, N, "channel", "int8", threads=threads), target)
    int8w = build(x86.schedule_linear(M, K, N, "channel", "int8", threads, True, fam.KERNEL, packed=False), target)
    int8w_args = tensors(x, unpacked_weights(T, fam.TILE_N), packed["w_sum"], scale, bias)
    fp32 = build(fam.linear_primfunc(M, K, N, "channel", "fp32", threads=threads), target)
    dense = fp32_dense(M, K, N, target, threads)
    dense_args = tensors(x, np.ascontiguousarray(W.reshape(N // 16, 16, K).transpose(0, 2, 1)))
    torch.set_num_threads(threads)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(bias)
    lin = torch.nn.Linear(K, N)
    with torch.no_grad():
        lin.weight.copy_(wt)
        lin.bias.copy_(bt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, torch.qint8)
    return {
        "ternary_int8_warm": tvm_sampler(int8, int8_args, False),
        "ternary_int8_cold": tvm_sampler(int8, int8_args, True),
        "ternary_int8w_warm": tvm_sampler(int8w, int8w_args, False),
        "ternary_int8w_cold": tvm_sampler(int8w, int8w_args, True),
        "ternary_fp32_warm": tvm_sampler(fp32, tensors(x, packed["w_packed"], scale, bias), False),
        "tvm_fp32_warm": tvm_sampler(dense, dense_args, False),
        "tvm_fp32_cold": tvm_sampler(dense, dense_args, True),
        "torch_fp32_warm": py_sampler(lambda: torch.nn.functional.linear(xt, wt, bt)),
        "torch_dyn_int8_warm": py_sampler(lambda: qlin(xt)),
        "numpy_fp32_warm": py_sampler(lambda: x @ W.T + bias),
    }


def bench_shape(M, K, N, threads, fam, rounds) -> dict:
    methods = samplers(M, K, N, threads, fam)
    samples = {name: [] for name in methods}
    with torch.no_grad():
        for _ in range(rounds):
            for name, sample in methods.items():
                samples[name].append(sample())
    r = {"M": M, "K": K, "N": N, "threads": threads, "rounds": rounds}
    r.update({name: float(np.median(s)) for name, s in samples.items()})
    r["spread"] = {name: [float(np.min(s)), float(np.max(s))] for name, s in samples.items()}
    return r


def ratio_table(rows, stat: str = "median") -> str:
    """Ratios of medians, or (stat="min") of the fastest sample of each method: under contention a
    long call is preempted more often than a short one, so medians flatter the faster kernel."""
    get = (lambda r, k: r[k]) if stat == "median" else (lambda r, k: r["spread"][k][0])  # noqa: E731
    head = ("| M | K→N | thr | ternary int8 µs | ×torch fp32 | ×TVM fp32 | ×torch dyn int8 | ternary fp32-act µs |"
            " cold µs | cold ×TVM fp32 | cold ×int8 weights |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        t, c = get(r, "ternary_int8_warm"), get(r, "ternary_int8_cold")
        lines.append(
            f"| {r['M']} | {r['K']}→{r['N']} | {r['threads']} | {t * 1e6:.0f} | {get(r, 'torch_fp32_warm') / t:.2f} | "
            f"{get(r, 'tvm_fp32_warm') / t:.2f} | {get(r, 'torch_dyn_int8_warm') / t:.2f} | "
            f"{get(r, 'ternary_fp32_warm') * 1e6:.0f} | {c * 1e6:.0f} | {get(r, 'tvm_fp32_cold') / c:.2f} | "
            f"{get(r, 'ternary_int8w_cold') / c:.2f} |")
    return "\n".join(lines)


def write_report(out: Path, meta: dict, rows: list) -> None:
    (out / f"kernels-{meta['cpu']}.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    (out / "kernels.md").write_text(
        f"# Ternary kernels on {meta['cpu']} ({meta['family']})\n\n"
        f"`{meta['command']}` ({meta['date']}). Ratios > 1: ternary int8 is faster. {meta['rounds']} interleaved "
        "rounds on a 2-core host shared with other jobs; raw medians and min/max in the JSON.\n\n"
        "## Medians\n\n" + ratio_table(rows) + "\n\n"
        "## Fastest sample of each method (closest to an idle machine)\n\n" + ratio_table(rows, "min") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the target shapes (M=1, 50 at 768/3072)")
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved samples per method (median reported)")
    a = ap.parse_args()
    shapes = QUICK if a.quick else [(m, k, n) for m in ROWS for k, n in SHAPES]
    threads = sorted({int(t) for t in a.threads.split(",")})
    fam = family()
    rows = []
    for th in threads:
        for M, K, N in shapes:
            rows.append(bench_shape(M, K, N, th, fam, a.rounds))
            print(ratio_table(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    meta = {"cpu": cpu_name(), "family": fam.__name__.rsplit(".", 1)[-1], "unit": "seconds per call, median of rounds",
            "rounds": a.rounds, "date": time.strftime("%Y-%m-%d"),
            "command": "python bench/kernels.py " + ("--quick " if a.quick else "") + f"--threads {a.threads} "
                       f"--rounds {a.rounds}"}
    write_report(out, meta, rows)
    print(ratio_table(rows))


if __name__ == "__main__":
    main()
