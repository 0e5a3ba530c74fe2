"""Ternary linear kernels vs fp32 and int8 peers on this host (not a test).

usage: python bench/kernels.py [--quick] [--threads 1,2]
Writes bench/results/kernels-<cpu>.json and bench/results/kernels.md (ratios side by side,
measured in one run because the cores are shared).
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
from edgeclip.schedules import x86_avx2, x86_avx512
from edgeclip.schedules.ternary import pack_weights
from tvm import s_tir, te

SHAPES = [(512, 512), (512, 2048), (2048, 512), (768, 768), (768, 3072), (3072, 768)]
ROWS = [1, 50, 77, 197]
QUICK = [(1, 768, 3072), (1, 3072, 768), (50, 768, 3072), (50, 3072, 768)]
FLUSH = 64 << 20  # bytes evicted before each cold-cache call


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


def tvm_time(lib, args, cold: bool, number=10) -> float:
    ev = lib.mod.time_evaluator("main", tvm.cpu(), number=1 if cold else number, repeat=5 if cold else 3,
                                cache_flush_bytes=FLUSH if cold else 0)
    return float(np.median(ev(*args).results))


def py_time(f, number=10) -> float:
    f()
    best = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(number):
            f()
        best.append((time.perf_counter() - t) / number)
    return float(np.median(best))


def bench_shape(M, K, N, threads, fam) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale, bias = rng.uniform(0.01, 1, N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    W = (T * scale[:, None]).astype(np.float32)
    target = fam.target(threads)
    packed = pack_weights(T, fam.TILE_N)
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
    r = {"M": M, "K": K, "N": N, "threads": threads}
    for act in ("int8", "fp32"):
        lib = tvm.compile(tvm.IRModule({"main": fam.linear_primfunc(M, K, N, "channel", act, threads=threads)}),
                          target=target)
        args = [x, packed["w_packed"]] + ([packed["w_sum"]] if act == "int8" else []) + [scale, bias]
        args = [tvm.runtime.tensor(a) for a in args] + [out]
        r[f"ternary_{act}_warm"] = tvm_time(lib, args, False)
        r[f"ternary_{act}_cold"] = tvm_time(lib, args, True)
    dense = fp32_dense(M, K, N, target, threads)
    wl = np.ascontiguousarray(W.reshape(N // 16, 16, K).transpose(0, 2, 1))
    dargs = [tvm.runtime.tensor(x), tvm.runtime.tensor(wl), out]
    r["tvm_fp32_warm"] = tvm_time(dense, dargs, False)
    r["tvm_fp32_cold"] = tvm_time(dense, dargs, True)
    torch.set_num_threads(threads)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(bias)
    lin = torch.nn.Linear(K, N)
    with torch.no_grad():
        lin.weight.copy_(wt)
        lin.bias.copy_(bt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, torch.qint8)
        r["torch_fp32_warm"] = py_time(lambda: torch.nn.functional.linear(xt, wt, bt))
        r["torch_dyn_int8_warm"] = py_time(lambda: qlin(xt))
    r["numpy_fp32_warm"] = py_time(lambda: x @ W.T + bias)
    return r


def ratio_table(rows) -> str:
    head = ("| M | K→N | thr | ternary int8 µs | ×torch fp32 | ×TVM fp32 | ×torch int8 | ternary fp32 µs |"
            " cold int8 µs | cold ×TVM fp32 |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        t = r["ternary_int8_warm"]
        lines.append(
            f"| {r['M']} | {r['K']}→{r['N']} | {r['threads']} | {t * 1e6:.0f} | {r['torch_fp32_warm'] / t:.2f} | "
            f"{r['tvm_fp32_warm'] / t:.2f} | {r['torch_dyn_int8_warm'] / t:.2f} | {r['ternary_fp32_warm'] * 1e6:.0f} | "
            f"{r['ternary_int8_cold'] * 1e6:.0f} | {r['tvm_fp32_cold'] / r['ternary_int8_cold']:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="only the target shapes (M=1, 50 at 768/3072)")
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}")
    a = ap.parse_args()
    shapes = QUICK if a.quick else [(m, k, n) for m in ROWS for k, n in SHAPES]
    threads = sorted({int(t) for t in a.threads.split(",")})
    fam = family()
    rows = []
    for th in threads:
        for M, K, N in shapes:
            rows.append(bench_shape(M, K, N, th, fam))
            print(ratio_table(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    meta = {"cpu": cpu_name(), "family": fam.__name__.rsplit(".", 1)[-1], "unit": "seconds, median"}
    (out / f"kernels-{meta['cpu']}.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    table = ratio_table(rows)
    (out / "kernels.md").write_text(f"# Ternary kernels on {meta['cpu']} ({meta['family']})\n\n"
                                    "Ratios > 1: ternary is faster. Shared 2-core host: one run, side by side.\n\n"
                                    + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
