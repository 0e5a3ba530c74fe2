"""Ternary linear kernels vs fp32 and int8 peers on this host (not a test).

usage: python bench/linear_kernels.py [--quick] [--threads 1,2] [--rounds 7] [--records] [--tune N]

Every method of one shape is timed in the same run, interleaved: each round times every method
once, and the table reports the median over rounds (cores may be shared with other jobs, so
sequential timings drift apart). Writes bench/results/kernels-<cpu>.json and
bench/results/kernels-<cpu>.md.

Methods: ternary int8 activations (2-bit packed weights; the same kernel with int8 weights, to
measure what packing saves when weights come from DRAM), ternary fp32 activations, TVM fp32
dense with a register-blocked schedule, torch fp32 `F.linear`, torch dynamic int8
(`quantize_dynamic`, fbgemm). "cold" flushes 64 MB of cache before every call. No numpy row:
OpenBLAS's idle threads spin between its calls, and interleaved with a 2-thread TVM kernel on 2
cores they cost it a scheduler tick (~4 ms) a call.

--records adds "ternary_int8_tuned": the int8 kernel with the register-blocking knobs its tuning
record in schedules/<host target>/ chose (the hand knobs where there is none; the row says which).
--tune N first tunes those knobs for every benchmarked shape (N trials each) and implies --records.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import tvm
from tvm import s_tir, te

from edgeclip.hostinfo import cpu_model
from edgeclip.lower import knobs as kernel_knobs
from edgeclip.lower import records as tuning_records
from edgeclip.lower.target import host_target, resolve_target
from edgeclip.lower.tune import kernel_task, tune_tasks
from edgeclip.schedules import x86
from edgeclip.schedules.family import load_family
from edgeclip.schedules.ternary import LinearShape, unpacked_weights

SHAPES = [(512, 512), (512, 2048), (2048, 512), (768, 768), (768, 3072), (3072, 768)]
ROWS = [1, 50, 77, 197]
QUICK = [(1, 768, 3072), (1, 3072, 768), (50, 768, 3072), (50, 3072, 768)]
FLUSH = 64 << 20  # bytes evicted before each cold-cache call
SAMPLE_S = 0.001  # a warm sample repeats calls up to ~1 ms: short enough to dodge most preemptions
# Idle time before each sample, so the previous method's thread pool (torch's OpenMP, TVM's) has
# stopped spinning: at 2 threads on 2 cores its spinners otherwise steal the cores from the next
# method (a 2-thread ternary kernel measured 791 us warm after torch vs 446 us cold).
SETTLE_S = 0.02


def cpu_name() -> str:
    """The CPU model as a file-name slug (kernels-amd-epyc.json)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", cpu_model()).strip("-").lower()


def family():
    """This host's x86 family module (`host_target()`: the best x86-64 member this CPU runs)."""
    return load_family(resolve_target(host_target()).family)


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


def kernel_key(M, K, N) -> tuple:
    return ("ternary_linear", "int8", M, K, N, "bias")  # how the rewrite names the kernel


def recorded_knobs(M, K, N, threads) -> tuple[x86.Knobs | None, str]:
    """(knobs, where from): the tuning record's knobs for this shape, else None and "hand"."""
    target = resolve_target(host_target(), threads)
    db = tuning_records.load(target.tvm(), target.name)
    key = kernel_key(M, K, N)
    record = db and db.query_tuning_record(kernel_knobs.workload(target, key), target.tvm(), "main")
    return (kernel_knobs.knobs_from_record(record), "record") if record else (None, "hand")


def samplers(M, K, N, threads, fam, tuned: x86.Knobs | None = None) -> dict:
    """Every method of one shape, as name -> callable returning seconds per call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K)).astype(np.float32)
    T = rng.integers(-1, 2, (N, K)).astype(np.int8)
    scale, bias = rng.uniform(0.01, 1, N).astype(np.float32), rng.standard_normal(N).astype(np.float32)
    W = (T * scale[:, None]).astype(np.float32)
    target = resolve_target(host_target(), threads).tvm()
    int8_shape = LinearShape(M, K, N, "channel", "int8")
    w_packed, w_sum = fam.pack_weights(T, "int8")
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32))
    tensors = lambda *arrays: [tvm.runtime.tensor(a) for a in arrays] + [out]  # noqa: E731
    int8_args = tensors(x, w_packed, w_sum, scale, bias)
    int8 = build(fam.linear_primfunc(int8_shape, threads), target)
    int8w = build(x86.schedule_linear(fam.FAMILY, int8_shape, threads, packed=False), target)
    int8w_args = tensors(x, unpacked_weights(T, fam.FAMILY.tile_n), w_sum, scale, bias)
    fp32 = build(fam.linear_primfunc(LinearShape(M, K, N, "channel", "fp32"), threads), target)
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
    extra = {}
    if tuned is not None:
        lib = build(x86.schedule_linear(fam.FAMILY, int8_shape, threads, knobs=tuned), target)
        extra["ternary_int8_tuned_warm"] = tvm_sampler(lib, int8_args, False)
        extra["ternary_int8_tuned_cold"] = tvm_sampler(lib, int8_args, True)
    return extra | {
        "ternary_int8_warm": tvm_sampler(int8, int8_args, False),
        "ternary_int8_cold": tvm_sampler(int8, int8_args, True),
        "ternary_int8w_warm": tvm_sampler(int8w, int8w_args, False),
        "ternary_int8w_cold": tvm_sampler(int8w, int8w_args, True),
        "ternary_fp32_warm": tvm_sampler(fp32, tensors(x, *fam.pack_weights(T, "fp32"), scale, bias), False),
        "tvm_fp32_warm": tvm_sampler(dense, dense_args, False),
        "tvm_fp32_cold": tvm_sampler(dense, dense_args, True),
        "torch_fp32_warm": py_sampler(lambda: torch.nn.functional.linear(xt, wt, bt)),
        "torch_dyn_int8_warm": py_sampler(lambda: qlin(xt)),
    }


def bench_shape(M, K, N, threads, fam, rounds, records=False) -> dict:
    knobs, source = recorded_knobs(M, K, N, threads) if records else (None, "")
    spec = x86.linear_spec(fam.FAMILY, LinearShape(M, K, N, "channel", "int8"))
    hand = x86.default_knobs(spec, fam.FAMILY.micro_kernel)
    methods = samplers(M, K, N, threads, fam, (knobs or hand) if records else None)
    samples = {name: [] for name in methods}
    with torch.no_grad():
        for _ in range(rounds):
            for name, sample in methods.items():
                time.sleep(SETTLE_S)
                samples[name].append(sample())
    r = {"M": M, "K": K, "N": N, "threads": threads, "rounds": rounds}
    r.update({name: float(np.median(s)) for name, s in samples.items()})
    r["spread"] = {name: [float(np.min(s)), float(np.max(s))] for name, s in samples.items()}
    if records:
        r["knobs"] = {"hand": vars(hand), "tuned": vars(knobs or hand), "tuned_from": source}
    return r


def tuned_table(rows) -> str:
    """Tuned vs hand knobs of the int8 kernel, same run (> 1: the record is faster)."""
    lines = ["| M | K→N | thr | hand knobs | hand µs | tuned knobs (from) | tuned µs | hand / tuned | cold hand / tuned |",
             "|" + "---|" * 9]
    for r in rows:
        if "knobs" not in r:
            continue
        k = r["knobs"]
        fmt = lambda kn: f"{kn['rows']}x{kn['vecs']}x{kn['kgroups']}"  # noqa: E731
        lines.append(
            f"| {r['M']} | {r['K']}→{r['N']} | {r['threads']} | {fmt(k['hand'])} | {r['ternary_int8_warm'] * 1e6:.0f} | "
            f"{fmt(k['tuned'])} ({k['tuned_from']}) | {r['ternary_int8_tuned_warm'] * 1e6:.0f} | "
            f"{r['ternary_int8_warm'] / r['ternary_int8_tuned_warm']:.2f} | "
            f"{r['ternary_int8_cold'] / r['ternary_int8_tuned_cold']:.2f} |")
    return "\n".join(lines)


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


def write_report(out: Path, meta: dict, rows: list, stem: str = "kernels") -> None:
    """`<stem>-<cpu>.json` + `<stem>-<cpu>.md`; a run with tuned knobs uses stem "kernels-tuned" so
    it never overwrites the full sweep, and each CPU keeps its own files."""
    tuned = tuned_table(rows) if any("knobs" in r for r in rows) else ""
    (out / f"{stem}-{meta['cpu']}.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    (out / f"{stem}-{meta['cpu']}.md").write_text(
        f"# Ternary kernels on {meta['cpu']} ({meta['family']})\n\n"
        f"`{meta['command']}` ({meta['date']}). Ratios > 1: ternary int8 is faster. {meta['rounds']} interleaved "
        f"rounds on {os.cpu_count()} cores, 1-min load average {meta['load1_start']:.1f} at the start and "
        f"{meta['load1_end']:.1f} at the end; raw medians and min/max in the JSON.\n\n"
        "## Medians\n\n" + ratio_table(rows) + "\n\n"
        "## Fastest sample of each method (closest to an idle machine)\n\n" + ratio_table(rows, "min") + "\n"
        + (f"\n## Tuned vs hand register blocking (rows x vecs x kgroups), medians\n\n{tuned}\n" if tuned else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the target shapes (M=1, 50 at 768/3072)")
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved samples per method (median reported)")
    ap.add_argument("--records", action="store_true", help="add the int8 kernel with its tuned knobs (schedules/<host target>)")
    ap.add_argument("--tune", type=int, default=0, metavar="N", help="tune each shape's knobs first (implies --records)")
    a = ap.parse_args()
    shapes = QUICK if a.quick else [(m, k, n) for m in ROWS for k, n in SHAPES]
    threads = sorted({int(t) for t in a.threads.split(",")})
    fam = family()  # resolves the host target, which sizes TVM's thread pool first
    for th in threads if a.tune else []:
        target = resolve_target(host_target(), th)
        tune_tasks([kernel_task(kernel_key(M, K, N), target) for M, K, N in shapes], target, a.tune)
    rows, load1_start = [], os.getloadavg()[0]
    for th in threads:
        for M, K, N in shapes:
            rows.append(bench_shape(M, K, N, th, fam, a.rounds, records=a.records or a.tune > 0))
            print(ratio_table(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    meta = {"cpu": cpu_name(), "family": fam.FAMILY.name, "unit": "seconds per call, median of rounds",
            "rounds": a.rounds, "date": time.strftime("%Y-%m-%d"), "load1_start": load1_start,
            "load1_end": os.getloadavg()[0],
            "command": "python bench/linear_kernels.py " + ("--quick " if a.quick else "") + f"--threads {a.threads} "
                       f"--rounds {a.rounds}" + (f" --tune {a.tune}" if a.tune else " --records" if a.records else "")}
    write_report(out, meta, rows, "kernels-tuned" if a.records or a.tune else "kernels")
    print(ratio_table(rows))
    if a.records or a.tune:
        print("\n" + tuned_table(rows))


if __name__ == "__main__":
    main()
