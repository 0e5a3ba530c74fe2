"""Regenerate the README's benchmark tables from bench/results/*.json.

Each table sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in README.md; run this
after a benchmark so the README shows exactly what the JSON holds.

    .venv/bin/python bench/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KERNEL_SHAPES = ((1, 768, 3072), (1, 3072, 768), (50, 768, 3072), (50, 3072, 768), (77, 512, 2048), (197, 768, 3072))


def _load(pattern: str) -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted(RESULTS.glob(pattern))]


def kernels_table() -> str:
    lines = []
    for path, data in _load("kernels-*.json"):
        meta = data["meta"]
        lines += [
            f"`{meta['command']}` on {meta['cpu']} ({meta['family']}), 1 thread, median of {meta['rounds']} "
            f"interleaved rounds ({path.name}). Ratios > 1 mean the ternary int8 kernel is faster.",
            "",
            "| M | K→N | ternary µs | ×torch fp32 | ×TVM fp32 | ×torch dyn int8 | cold ×TVM fp32 | cold ×int8 weights |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in data["results"]:
            if row["threads"] != 1 or (row["M"], row["K"], row["N"]) not in KERNEL_SHAPES:
                continue
            t = row["ternary_int8_warm"]
            lines.append(
                f"| {row['M']} | {row['K']}→{row['N']} | {t * 1e6:.0f} | {row['torch_fp32_warm'] / t:.2f} | "
                f"{row['tvm_fp32_warm'] / t:.2f} | {row['torch_dyn_int8_warm'] / t:.2f} | "
                f"{row['tvm_fp32_cold'] / row['ternary_int8_cold']:.2f} | "
                f"{row['ternary_int8w_cold'] / row['ternary_int8_cold']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def e2e_table() -> str:
    lines = []
    for path, data in _load("e2e-*.json"):
        lines += [f"{data['model']}, batch 1, {data['cores']}-core {data['cpu']} host ({path.name}).", ""]
        lines += ["| shape | tower | batch | threads | runtime | precision | ms | × vs strongest peer | "
                  "tower / kernels efficiency |", "|---|---|---|---|---|---|---|---|---|"]
        groups: dict[tuple, list[dict]] = {}
        for r in data["rows"]:
            groups.setdefault((r.get("shape", "vit-b-32"), r["tower"], r.get("batch", 1), r["threads"]), []).append(r)
        for (shape, tower, batch, threads), rows in groups.items():
            best = min((r for r in rows if not r["runtime"].startswith("tvm")), key=lambda r: r["ms"])
            for r in sorted(rows, key=lambda r: (r is not best, not r["runtime"].startswith("tvm"), r["ms"])):
                eff = (f"{100 * r['tower_efficiency']:.0f} % / {100 * r['kernel_efficiency']:.0f} %"
                       if "tower_efficiency" in r else "")
                name = f"**{r['runtime']}**" if r is best else r["runtime"]
                lines.append(f"| {shape} | {tower} | {batch} | {threads} | {name} | {r.get('precision', '')} | "
                             f"{r['ms']:.1f} | {best['ms'] / r['ms']:.2f} | {eff} |")
        if "peak_mac_per_s" in data:
            peaks = ", ".join(f"{v / 1e9:.0f} GMAC/s at {n} thread(s)" for n, v in data["peak_mac_per_s"].items())
            lines += ["", f"Efficiency = multiply-accumulates of the tower's linears and matmuls (kernels: of the "
                          f"ternary kernels alone, from the per-op profile) / (time × this CPU's "
                          f"`{data['peak_instruction']}` peak, measured in the same run: {peaks}). Command: "
                          f"`{data['command']}`; load average {data['load_average'][0]:.1f}."]
        lines.append("")
    return "\n".join(lines)


def ptq_table() -> str:
    lines = []
    for path, data in _load("ptq-*.json"):
        lines += [
            f"all-MiniLM-L6-v2, q-all, no training, {data['sentences']} held-out sentences ({path.name}):",
            "",
            "| granularity | β | mean cosine | neighbour recall@10 | zeros |",
            "|---|---|---|---|---|",
        ]
        for r in data["rows"]:
            lines.append(
                f"| {r['granularity']} | {r['beta']} | {r['mean_cosine']:.3f} | "
                f"{r['neighbour_recall_at_10']:.3f} | {100 * r['sparsity']:.0f} % |"
            )
        lines.append("")
    return "\n".join(lines)


def bundle_table() -> str:
    lines = ["| model | target | fp32 safetensors | ternary payload | × smaller | whole tar | peak RSS fp32/ternary "
             "| build s | load avg |", "|---|---|---|---|---|---|---|---|---|"]
    for _, d in _load("bundle-*.json"):
        lines.append(
            f"| {d['shape']} | {d['target']} | {d['fp32_safetensors_bytes'] / 1e6:.1f} MB | "
            f"{d['ternary_payload_bytes'] / 1e6:.2f} MB | {d['payload_compression_vs_fp32_safetensors']:.1f} | "
            f"{d['bundle_bytes'] / 1e6:.1f} MB | {_figure(d, 'peak_rss_ratio_fp32_over_ternary', '.2f')} | "
            f"{_figure(d, 'build_seconds_with_fp32_baseline', '.0f')} | "
            f"{_figure(d, 'load_average_1m_after_build', '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def device_table() -> str:
    lines = ["| model | CPU | load ms ternary (image) | load ms fp32 (image) | classify ms/JPEG | decode + "
             "preprocess | embed images/s batch 1 → 8 | tower ms/image batch 1 → 8 | text embed ms | serve peak RSS "
             "| load avg |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, d in _load("device-*.json"):
        load, classify, embed, tower, serve = (d[k] for k in ("load", "classify", "embed", "tower", "serve"))
        cpu, ternary = d["host_before"], d.get("ternary_variant", "ternary")
        lines.append(
            f"| {d['shape']} {d['target']} ({ternary}) | {cpu['cpu']} ({cpu['cpus']} CPUs, {', '.join(cpu['cpu_flags'])}) | "
            f"{load[f'{ternary} image,text']['median_ms']:.0f} ({load[f'{ternary} image']['median_ms']:.0f}) | "
            f"{load['fp32 image,text']['median_ms']:.0f} ({load['fp32 image']['median_ms']:.0f}) | "
            f"{classify['round_trip']['median_ms']:.1f} | {classify['decode_preprocess_ms']:.1f} ms "
            f"({100 * classify['decode_preprocess_share']:.0f} %) | "
            f"{embed['1']['images_per_s']:.1f} → {embed['8']['images_per_s']:.1f} | "
            f"{tower['1']['per_image_ms']:.1f} → {tower['8']['per_image_ms']:.1f} | "
            f"{serve['text_embed_round_trip']['median_ms']:.1f} | {serve['peak_rss_kb'] / 1024:.0f} MiB | "
            f"{cpu['load_average'][0]:.1f}–{d['host_after']['load_average'][0]:.1f} |"
        )
    lines.append("")
    for _, d in _load("device-*.json"):
        load, share = d["goals"]["ternary_load_le_300_ms"], d["goals"]["decode_preprocess_le_10_percent"]
        lines.append(
            f"Goals, {d['shape']} {d['target']} ({d['host_before']['date'][:10]}, edgeclip "
            f"{d['host_before']['edgeclip_commit']}): ternary load ≤ 300 ms {_met(load)} "
            f"({load['measured_ms']:.0f} ms); decode + preprocess ≤ 10 % of classify {_met(share)} "
            f"({100 * share['measured']:.1f} %: the runner's own split, decode "
            f"{d['classify']['stages_ms_p50']['decode']:.2f} + preprocess {d['classify']['stages_ms_p50']['preprocess']:.2f}"
            f" of {sum(d['classify']['stages_ms_p50'].values()):.1f} ms)."
        )
    return "\n".join(lines) + "\n"


def _table(header: list[str], pattern: str, rows) -> str:
    """A Markdown table: `header`, then the lines `rows(data)` gives for each results file matching `pattern`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, data in _load(pattern):
        lines += rows(data)
    return "\n".join(lines) + "\n"


def peak_table() -> str:
    def rows(d: dict) -> list[str]:
        meta = d["meta"]
        return [f"| {meta['cpu']} | `{meta['instruction']}` × {meta['accumulators']} | {row['threads']} | "
                f"{row['mac_per_s'] / 1e9:.0f} | {row['core_ghz']:.2f} | {row['mac_per_cycle_per_core']:.0f} | "
                f"{meta['load_average'][0]:.1f} |" for row in d["results"]]

    return _table(["CPU", "instruction", "threads", "GMAC/s", "core GHz (measured)", "MAC/cycle/core", "load avg"],
                  "peak-*.json", rows)


ARM_GOALS_MS = {"rpi5": 40, "rpi4": 150}  # issue #21: image tower at 4 threads, as estimates


def arm_table() -> str:
    lines = []
    for _, d in _load("arm-model.json"):
        cal = d["calibration"]
        first = next(iter(cal["models"]))
        lines += [
            f"ESTIMATES, not measurements ({d['meta']['llvm_mca']}). Calibration on {cal['cpu']} at "
            f"{cal['core_ghz']:.2f} GHz: measured / estimated kernel time = {cal['error']:.2f} with the "
            f"{first} model (" + ", ".join(f"{m}: {v['error']:.2f}" for m, v in cal["models"].items()) + ").",
            "",
            "| board (llvm-mca model) | tower | ternary kernels ms 1 → 4 threads | tower ms 1 → 4 threads "
            "(× calibration) | rest serial, 4 threads | ideal fp32 NEON GEMM ms 1 → 4 | ncnn fp32 ms (scaled) |",
            "|---|---|---|---|---|---|---|",
        ]
        for board in d["boards"].values():
            ncnn = ", ".join(f"{v:.0f} at {t}" for t, v in board["ncnn_fp32_vit_b32_224_ms"].items())
            for tower, t in board["towers"].items():
                one, four = t["estimates"]
                gemm = t["fp32_neon_gemm_ms"]
                lines.append(
                    f"| {board['description']} ({board['mca_cpu']}) | {tower} | {one['kernels_ms']:.0f} → "
                    f"{four['kernels_ms']:.0f} | {one['tower_ms']:.0f} → {four['tower_ms']:.0f} "
                    f"({one['tower_ms_calibrated']:.0f} → {four['tower_ms_calibrated']:.0f}) | "
                    f"{four['tower_ms_rest_serial']:.0f} | {gemm['1']:.0f} → {gemm['4']:.0f} | "
                    f"{ncnn if tower.startswith('image') else '–'} |")
        lines.append("")
        for name, goal in ARM_GOALS_MS.items():
            four = d["boards"][name]["towers"]["image vit-b-32"]["estimates"][1]
            verdict = "met" if four["tower_ms_calibrated"] < goal else "not met"
            lines.append(f"- {name} image tower < {goal} ms at 4 threads: **{verdict}** as an estimate "
                         f"({four['tower_ms']:.1f} ms raw, {four['tower_ms_calibrated']:.1f} ms calibrated, "
                         f"{four['tower_ms_rest_serial']:.0f} ms with the rest serial).")
    return "\n".join(lines) + "\n"


def _met(goal: dict) -> str:
    return "**met**" if goal["met"] else "**not met**"


def _figure(record: dict, key: str, spec: str) -> str:
    """A measured figure, or a dash where this run could not measure it (e.g. RSS off-device)."""
    return format(record[key], spec) if key in record else "–"


def training_table() -> str:
    lines = []
    for path, data in _load("training-*.json"):
        lines += _minilm_lines(data, path.name) + _ablation_lines(data, path.name)
    return "\n".join(lines)


def _minilm_lines(data: dict, name: str) -> list[str]:
    if "minilm" not in data:
        return []
    target = data["minilm"]["targets"]
    lines = [
        f"all-MiniLM-L6-v2 → q-all ternary, self-taught distillation, {data['cores']}-core {data['cpu']} host "
        f"({name}); scores on the 1,000 held-out sentences (target within {target['budget']}: cosine ≥ "
        f"{target['mean_cosine']}, recall@10 ≥ {target['neighbour_recall_at_10']}). Load = 1-min load average "
        "during the run: a run alone on the host reads about its thread count, more means other jobs shared it.",
        "",
        "| budget | threads | steps | samples/s | load mean/max | mean cosine | recall@10 | WordNet glosses: "
        "cosine / recall@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["minilm"]["runs"]:
        final, wordnet = r["final"], r.get("wordnet")
        unseen = f"{wordnet['mean_cosine']:.4f} / {wordnet['neighbour_recall_at_10']:.4f}" if wordnet else "not measured"
        lines.append(
            f"| {r['budget']} | {r['threads']} | {r['steps_done']} ({r['stopped_by'].replace('_', ' ')}) | "
            f"{r['samples_per_s_median']:.1f} | {r['load1_mean']:.1f}/{r['load1_max']:.1f} | "
            f"{final['mean_cosine']:.4f} | {final['neighbour_recall_at_10']:.4f} | {unseen} |"
        )
    return lines + [""]


def _ablation_lines(data: dict, name: str) -> list[str]:
    if "ablation" not in data:
        return []
    a = data["ablation"]
    lines = [
        f"Fashion-MNIST test split (10k), built-in teacher, q-all students trained {a['steps']} steps with seed "
        f"{a['seed']} and 1 thread each ({name}):",
        "",
        "| model | top-1 % | top-5 % | ternary share of linear weights |",
        "|---|---|---|---|",
    ]
    for r in a["rows"]:
        ternary = f"{100 * r['ternary_fraction_linear']:.0f} %" if "ternary_fraction_linear" in r else "–"
        lines.append(f"| {r['label']} | {100 * r['top1']:.2f} | {100 * r['top5']:.2f} | {ternary} |")
    return lines + [""]


def search_table() -> str:
    def rows(d: dict) -> list[str]:
        cpu = d["host_before"]
        return [f"| {cpu['cpu']} ({cpu['cpus']} CPUs, 1 used) | {c['encoding']} | {c['rerank'] or 100} | "
                f"{c['p50_ms']:.2f} ({c['p90_ms']:.2f}) | {c['recall_at_10']:.4f} | "
                f"{c['bytes_scanned'] / 1e6:.2f} MB | {100 * c['vector_storage_vs_fp32']:.1f} % | "
                f"{cpu['load_average'][0]:.1f}–{d['host_after']['load_average'][0]:.1f} |" for c in d["configs"]]

    return _table(["CPU", "encoding", "rerank", "p50 ms (p90)", "recall@10", "bytes scanned / query", "vectors vs fp32",
                   "load avg"], "search-*.json", rows)


def minilm_table() -> str:
    """The seed paper's MiniLM rows: per sentence at batch 1 and 32, each runtime against torch fp32 in the same run."""
    lines = []
    for _, d in _load("minilm-*.json"):
        cpu, storage = d["host_before"], d["storage"]
        lines += [f"all-MiniLM-L6-v2 q-all, {d['seq_len']} tokens, {d['target']} bundle; {cpu['cpu']} ({cpu['cpus']} CPUs, "
                  f"{', '.join(cpu['cpu_flags'])}), load {cpu['load_average'][0]:.1f}–{d['host_after']['load_average'][0]:.1f}, "
                  f"{cpu['date'][:10]}, edgeclip {cpu['edgeclip_commit']}. Storage: fp32 weights "
                  f"{storage['fp32_weights_bytes'] / 1e6:.1f} MB → ternary payload {storage['ternary_payload_bytes'] / 1e6:.1f} MB "
                  f"(**{100 * (1 - storage['ternary_vs_fp32_weights']):.0f} % less**; onnxruntime int8 dynamic file "
                  f"{storage['onnxruntime_int8_mb']:.1f} MiB).", "",
                  "| batch | threads | runtime | ms / call | ms / sentence | lower latency than torch fp32 | cosine |",
                  "|---|---|---|---|---|---|---|"]
        for r in d["rows"]:
            torch_ms = next(t["ms"] for t in d["rows"] if (t["batch"], t["threads"], t["runtime"]) ==
                            (r["batch"], r["threads"], "torch fp32"))
            agreement = r.get("cosine_vs_torch_fp32", r.get("cosine_to_bundle_reference"))
            name = f"**{r['runtime']}**" if r["runtime"].startswith("edgeclip ternary") else r["runtime"]
            lines.append(f"| {r['batch']} | {r['threads']} | {name} | {r['ms']:.1f} | {r['ms_per_sentence']:.2f} | "
                         f"{100 * (1 - r['ms'] / torch_ms):+.0f} % | {agreement} |")
        lines.append("")
    return "\n".join(lines)


TABLES = {"kernels": kernels_table, "e2e": e2e_table, "ptq": ptq_table, "bundle": bundle_table,
          "device": device_table, "training": training_table, "peak": peak_table,
          "arm": arm_table, "search": search_table, "minilm": minilm_table}


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, render in TABLES.items():
        start, end = f"<!-- bench:{name} -->\n", f"<!-- /bench:{name} -->"
        if start not in text or end not in text:
            raise SystemExit(f"README.md has no {start.strip()} section")
        head, rest = text.split(start, 1)
        text = head + start + render() + end + rest.split(end, 1)[1]
    readme.write_text(text)
    print(f"updated {len(TABLES)} tables in {readme}")


if __name__ == "__main__":
    main()
