"""Demo step 7: `report.md` for people, `demo.json` (every figure in the report) for machines, and
PNG plots drawn from that JSON with matplotlib's Agg backend.

Host figures are labelled with the machine they were measured on; emulated figures are labelled
correctness-only, and their timings are never plotted.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeclip.fsutil import write_synced

MODELS = (("teacher", "teacher (fp32)"), ("ptq", "PTQ (q-all, no training)"), ("student", "student (q-all, QAT + KD)"))
ACCURACY_COLUMNS = (("top1", "top-1 %"), ("top5", "top-5 %"), ("t2i_precision@10", "T→I P@10 %"),
                    ("t2i_map", "T→I mAP %"))


def write(record: dict, folder: Path) -> dict[str, Path]:
    """Write demo.json, the plots and report.md into `folder`; returns what was written."""
    files = {"json": folder / "demo.json"}
    write_synced(files["json"], (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())
    files.update(plots(record, folder))
    files["markdown"] = folder / "report.md"
    write_synced(files["markdown"], markdown(record, {k: v.name for k, v in files.items()}).encode())
    return files


# ---- Markdown --------------------------------------------------------------------------------------


def markdown(record: dict, files: dict[str, str]) -> str:
    machine = record["machine"]
    lines = [
        f"# edgeclip demo ({record['plan']})",
        "",
        f"- When: {record['started']}; took {record.get('seconds', 0):.0f} s; edgeclip {record['edgeclip_version']}",
        f"- Host: {machine['cpu']} ({machine['arch']}), {machine['cores']} cores; load average "
        f"{_load(machine['load_average_start'])} at the start, {_load(machine.get('load_average_end'))} at the end "
        f"(1, 5, 15 min; other jobs on a shared machine slow every figure here); torch threads: "
        f"{machine.get('torch_threads', 'default')}",
        "- Model: the built-in CLIP teacher (28×28 grayscale ViT + all-MiniLM-L6-v2 text tower, trained on "
        "Fashion-MNIST), every linear layer and embedding ternarized (q-all)",
        "",
        "## Steps",
        "",
        "| # | step | status | seconds | note |",
        "|---|---|---|---|---|",
    ]
    for i, step in enumerate(record["steps"], 1):
        lines.append(f"| {i} | {step['title']} | {step['status']} | {step['seconds']:.0f} | {_cell(step['note'])} |")
    lines += _accuracy(record, files) + _sizes(record, files) + _speed(record, files) + _predictions(record, files)
    lines += _on_device(record) + _embedding(record)
    lines += ["", "## Files", "", f"- `{files['json']}`: every figure above, as JSON"]
    lines += [f"- `{name}`" for key, name in files.items() if key.endswith("_png")]
    lines += [f"- `{path}`" for path in record.get("artifacts", [])]
    return "\n".join(lines) + "\n"


def _accuracy(record: dict, files: dict) -> list[str]:
    accuracy = record.get("accuracy") or {}
    lines = ["", "## Accuracy", ""]
    if not accuracy:
        return lines + ["Not evaluated (see the steps above)."]
    samples = next(iter(accuracy.values()))["samples"]
    lines += [f"Zero-shot on the Fashion-MNIST test split ({samples} images; 10 classes, 8 prompt templates). "
              "T→I: each class's prompts retrieve images; P@10 = share of the first 10 that are of the class.",
              "", "| model | " + " | ".join(title for _, title in ACCURACY_COLUMNS) + " |",
              "|---" * (len(ACCURACY_COLUMNS) + 1) + "|"]
    for key, label in MODELS:
        if key in accuracy:
            cells = " | ".join(f"{100 * accuracy[key][column]:.2f}" for column, _ in ACCURACY_COLUMNS)
            lines.append(f"| {label} | {cells} |")
    return lines + _image(files, "accuracy_png", "accuracy")


def _sizes(record: dict, files: dict) -> list[str]:
    sizes = record.get("sizes") or {}
    lines = ["", "## Sizes", ""]
    if not sizes:
        return lines + ["Not measured (see the steps above)."]
    lines += ["| what | MB | × smaller than fp32 weights |", "|---|---|---|"]
    fp32 = sizes["fp32_weights_bytes"]
    lines.append(f"| fp32 weights (parameters × 4 bytes) | {_mb(fp32)} | 1.00 |")
    for key, label in (("teacher_checkpoint_bytes", "teacher checkpoint (fp32 safetensors)"),
                       ("student_checkpoint_bytes", "student checkpoint (trits at 1.6 bits + float rest)")):
        if sizes.get(key):
            lines.append(f"| {label} | {_mb(sizes[key])} | {fp32 / sizes[key]:.2f} |")
    for target, bundle in (record.get("bundles") or {}).items():
        lines.append(f"| {target} bundle: ternary payload (modules + packed weights) | "
                     f"{_mb(bundle['ternary_payload_bytes'])} | {bundle['payload_smaller_than_fp32_weights']:.2f} |")
        if bundle.get("fp32_payload_bytes"):
            lines.append(f"| {target} bundle: fp32 baseline payload | {_mb(bundle['fp32_payload_bytes'])} | "
                         f"{fp32 / bundle['fp32_payload_bytes']:.2f} |")
        lines.append(f"| {target} bundle: whole tar (runner, TVM runtime, tokenizer, every variant) | "
                     f"{_mb(bundle['bundle_bytes'])} | – |")
    stats = sizes.get("student_stats") or {}
    if stats:
        lines += ["", f"Student: {100 * stats['ternary_fraction_all']:.1f} % of all weights ternary "
                      f"({100 * stats['ternary_fraction_linear']:.1f} % of linear weights), {100 * stats['sparsity']:.1f} % "
                      f"of the trits zero, {stats['bits_per_weight']:.2f} bits a weight on average."]
    return lines + _image(files, "sizes_png", "sizes")


def _speed(record: dict, files: dict) -> list[str]:
    profiles = record.get("profiles") or {}
    lines = ["", "## Speed and memory", ""]
    host = profiles.get("host")
    if host:
        machine = record["machine"]
        lines += [f"### host: {host['target']} bundle on this machine ({machine['cpu']}, {machine['cores']} cores, "
                  f"{host.get('threads', 'all')} thread(s), {host['runs']} runs)", ""]
        lines += _module_table(host["result"], timings=True)
        lines += _torch_reference(host)
        lines += _image(files, "latency_png", "host latency")
    else:
        lines += ["Host: not profiled (see the steps above)."]
    emulated = profiles.get("device")
    lines += ["", f"### {record.get('device_target', 'rpi4')}: emulated aarch64, correctness only", ""]
    if emulated:
        lines += [f"Ran as: {emulated['mode']}. qemu-user translates every instruction, so these timings say "
                  "nothing about a real board; the check is that the compiled aarch64 modules reproduce the "
                  "PyTorch reference. Profile a real board with `edgeclip profile BUNDLE --host user@board`."]
        lines += [f"- {reason}" for reason in emulated.get("reasons", [])]
        lines += [""] + _module_table(emulated["result"], timings=False)
        if emulated.get("report"):
            lines += ["", f"Full remote report: `{emulated['report']}`."]
    else:
        lines += [f"Skipped: {profiles.get('device_skipped', 'see the steps above')}."]
    return lines


def _torch_reference(host: dict) -> list[str]:
    reference = host.get("torch_fp32")
    if not reference:
        return []
    torch_p50 = reference["latency_ms"]["p50"]
    ternary_p50 = host["result"]["modules"]["ternary"]["latency_ms"]["p50"]
    return ["", f"The bundle's fp32 module is TVM's stock compile without tuning, so it flatters the ratio above. "
                f"The fair fp32 figure is the float teacher in PyTorch (eager, same towers and shapes, "
                f"{reference['threads']} thread(s)): p50 **{torch_p50:.2f} ms**, so the ternary bundle is "
                f"**{torch_p50 / ternary_p50:.2f}×** as fast as PyTorch fp32 here."]


def _module_table(result: dict, timings: bool) -> list[str]:
    modules = result["modules"]
    names = list(modules)
    suffix = "" if timings else " (emulated)"
    rows = [
        (f"latency p50 (ms){suffix}", lambda m: f"{m['latency_ms']['p50']:.2f}"),
        (f"latency p90 (ms){suffix}", lambda m: f"{m['latency_ms']['p90']:.2f}"),
        (f"load (ms){suffix}", lambda m: f"{m['load_ms']:.0f}"),
        ("peak RSS (MiB)", lambda m: f"{m['peak_rss_kb'] / 1024:.1f}"),
        ("cosine to the PyTorch reference", lambda m: f"{m['cosine_to_reference']:.4f} (min {m['min_cosine']})"),
        ("output check", lambda m: "pass" if m["output_ok"] else "FAIL"),
    ]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cell(modules[n]) for n in names) + " |" for label, cell in rows]
    ratios = result.get("ratios") or {}
    if ratios:
        kind = "" if timings else " (emulated: correctness only)"
        lines += ["", f"Bundle fp32 module / ternary module{kind}: speed-up p50 **{ratios['speedup_p50']:.2f}×**, "
                      f"peak memory **{ratios['memory_ratio']:.2f}×**."]
    else:
        lines += ["", "No fp32 baseline in this bundle (`--quick` leaves it out), so no speed-up or memory ratio."]
    return lines


def _predictions(record: dict, files: dict) -> list[str]:
    rows = record.get("predictions") or []
    lines = ["", "## Predictions of the host bundle", ""]
    if not rows:
        return lines + ["Not run (see the steps above)."]
    if record.get("photos_missing"):
        lines += [f"No sample photos: {record['photos_missing']}.", ""]
    agree = sum(r["bundle"] == r["torch"] for r in rows)
    lines += [f"Prompts \"a photo of a {{class}}.\" for the 10 Fashion-MNIST classes. The bundle (native runner, "
              f"ternary kernels, int8 activations) and the PyTorch student agree on {agree} of {len(rows)} images. "
              "The photos are out of domain for a 28×28 clothing model: shrunk to 28×28 grayscale, they show "
              "what it makes of any picture.", "",
              "| image | true class | bundle top-1 | PyTorch top-1 |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['truth'] or '–'} | {r['bundle']} ({100 * r['bundle_p']:.0f} %) | "
                     f"{r['torch']} ({100 * r['torch_p']:.0f} %) |")
    return lines + ["", "Each image as the model sees it (28×28 grayscale), titled with the host bundle's top-1:"] + \
        _image(files, "predictions_png", "predictions")


def _on_device(record: dict) -> list[str]:
    used = record.get("on_device")
    lines = ["", f"## The {record.get('device_target', 'rpi4')} bundle used on the emulated board", ""]
    if not used:
        return lines + ["Not run (see the steps above)."]
    rows, embed = used["classify"], used["embed"]
    lines += [f"`edgeclip-runner classify` of the bundle, under qemu-user: the device decodes, preprocesses and "
              f"tokenizes by itself (C++, no Python), one process for all the images and labels. Its top-1 and the "
              f"PyTorch student's agree on {used['agree']} of {len(rows)} images.", "",
              "| image | true class | device top-1 | PyTorch top-1 |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['truth'] or '–'} | {r['device']} ({100 * r['device_p']:.0f} %) | "
                     f"{r['torch']} ({100 * r['torch_p']:.0f} %) |")
    return lines + ["", f"`edgeclip-runner embed --image images/ --out {embed['file']}`: {embed['count']} images, "
                        f"{embed['dim']}-d; cosine to the PyTorch image tower min {embed['cosine_min']:.5f}, "
                        f"mean {embed['cosine_mean']:.5f}."]


def _embedding(record: dict) -> list[str]:
    """The sentence encoder: storage, fidelity to the float model, and search on the emulated board."""
    found = record.get("embedding", {})
    lines = ["", "## Embedding model: ternary all-MiniLM-L6-v2", ""]
    if "search" not in found:
        return lines + ["Not run (see the steps above)." if not found else
                        f"Trained {found['steps']} steps; not bundled or searched (see the steps above)."]
    sizes, fidelity, search = found["sizes"], found["fidelity"], found["search"]
    lines += [f"all-MiniLM-L6-v2 with every linear layer ternarized (q-all), distilled from itself for {found['steps']} "
              f"steps, bundled for {record.get('device_target', 'rpi4')} with a {search['seq_len']}-token "
              "context. The board's own runner (under qemu-user: WordPiece, pooling, int8 index, exact search "
              "in C++) indexed the corpus and answered held-out fortunes.", "",
              "| what | figure |", "|---|---|",
              f"| fp32 weights → ternary payload | {_mb(sizes['fp32_weights_bytes'])} MB → "
              f"{_mb(sizes['ternary_payload_bytes'])} MB ({sizes['storage_saved']:.0%} less) |",
              f"| held-out fidelity to the float model ({fidelity['samples']} fortunes) | mean cosine "
              f"{fidelity['mean_cosine']:.3f}, neighbour recall@10 {fidelity['neighbour_recall_at_10']:.3f} |",
              f"| index on the board ({search['corpus']:,} sentences) | {search['index_bytes'] / 1e3:.1f} kB |",
              f"| board search recall@10 ({search['queries']} queries) vs exact search on the float teacher | "
              f"{search['recall_at_10_vs_teacher']:.3f} |",
              f"| … vs exact search on the student's own PyTorch embeddings | {search['recall_at_10_vs_student']:.3f} |",
              f"| board query embeddings vs the PyTorch student | cosine min {search['device_vs_student_cosine_min']:.4f} |",
              "", f"Example: “{search['example']['query']}” → “{search['example']['top']}” "
              f"(cosine {search['example']['score']:.3f})."]
    return lines


def _image(files: dict, key: str, alt: str) -> list[str]:
    return ["", f"![{alt}]({files[key]})"] if key in files else []


def _mb(value: float) -> str:
    return f"{value / 1e6:.2f}"


def _load(values) -> str:
    return "n/a" if not values else " / ".join(f"{v:.2f}" for v in values)


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


# ---- plots -----------------------------------------------------------------------------------------


def plots(record: dict, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}
    for key, draw in (("accuracy_png", _plot_accuracy), ("sizes_png", _plot_sizes), ("latency_png", _plot_latency),
                      ("predictions_png", _plot_predictions)):
        figure = draw(record, plt)
        if figure is not None:
            written[key] = folder / key.replace("_png", ".png")
            figure.tight_layout()
            figure.savefig(written[key], dpi=100)
            plt.close(figure)
    return written


def _plot_accuracy(record: dict, plt):
    accuracy = record.get("accuracy") or {}
    present = [(key, label) for key, label in MODELS if key in accuracy]
    if not present:
        return None
    figure, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(present)
    for i, (key, label) in enumerate(present):
        values = [100 * accuracy[key][column] for column, _ in ACCURACY_COLUMNS]
        ax.bar([x + i * width for x in range(len(ACCURACY_COLUMNS))], values, width, label=label.split(" (")[0])
    ax.set_xticks([x + width * (len(present) - 1) / 2 for x in range(len(ACCURACY_COLUMNS))],
                  [title for _, title in ACCURACY_COLUMNS])
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title("Fashion-MNIST test, zero-shot")
    ax.legend()
    return figure


def _plot_sizes(record: dict, plt):
    sizes = record.get("sizes") or {}
    if not sizes:
        return None
    bars = [("fp32 weights", sizes["fp32_weights_bytes"])]
    bars += [(label, sizes[key]) for key, label in (("teacher_checkpoint_bytes", "teacher ckpt"),
                                                    ("student_checkpoint_bytes", "student ckpt")) if sizes.get(key)]
    for target, bundle in (record.get("bundles") or {}).items():
        bars.append((f"{target}\nternary payload", bundle["ternary_payload_bytes"]))
        if bundle.get("fp32_payload_bytes"):
            bars.append((f"{target}\nfp32 payload", bundle["fp32_payload_bytes"]))
    figure, ax = plt.subplots(figsize=(max(6, 1.1 * len(bars)), 3.5))
    ax.bar([label for label, _ in bars], [value / 1e6 for _, value in bars],
           color=["tab:orange" if "fp32" in label or "teacher" in label else "tab:blue" for label, _ in bars])
    ax.set_ylabel("MB")
    ax.set_title("What the model weighs")
    ax.tick_params(axis="x", labelsize=8)
    return figure


def _plot_latency(record: dict, plt):
    host = (record.get("profiles") or {}).get("host")
    if not host:
        return None
    modules = host["result"]["modules"]
    latencies = {f"{name} bundle": figures["latency_ms"] for name, figures in modules.items()}
    if host.get("torch_fp32"):
        latencies["PyTorch fp32"] = host["torch_fp32"]["latency_ms"]
    quantiles = ("p50", "p90", "p99")
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    width = 0.8 / len(latencies)
    values = [latency[q] for latency in latencies.values() for q in quantiles]
    for i, (name, latency) in enumerate(latencies.items()):
        bars = left.bar([x + i * width for x in range(3)], [latency[q] for q in quantiles], width, label=name)
        left.bar_label(bars, fmt="%.1f", fontsize=7)
    left.set_xticks([x + width * (len(latencies) - 1) / 2 for x in range(3)], quantiles)
    left.set_ylabel("ms per image + text")
    if max(values) > 20 * min(values):  # fp32 untuned next to ternary: both stay readable
        left.set_yscale("log")
    left.set_title(f"host latency ({host['target']})")
    left.legend(fontsize=8)
    right.bar([f"{name} bundle" for name in modules], [figures["peak_rss_kb"] / 1024 for figures in modules.values()],
              color=["tab:blue", "tab:orange"][: len(modules)])
    right.set_ylabel("MiB")
    right.set_title("host peak RSS")
    return figure


def _plot_predictions(record: dict, plt):
    rows = record.get("predictions") or []
    if not rows:
        return None
    from PIL import Image

    figure, axes = plt.subplots(1, len(rows), figsize=(1.9 * len(rows), 2.8), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        with Image.open(row["path"]) as image:
            ax.imshow(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR), cmap="gray",
                      interpolation="nearest")
        ax.set_title(f"{row['bundle']}\n{100 * row['bundle_p']:.0f} %" + (f"\n(true: {row['truth']})" if row["truth"] else ""),
                     fontsize=8)
        ax.axis("off")
    return figure
