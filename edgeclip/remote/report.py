"""Profile reports: JSON for machines, Markdown for people (ternary and fp32 side by side with the
speed-up and memory ratios), and PNG plots drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeclip.remote.profile import ProfileResult


def write_json(result: ProfileResult, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_dict(), indent=2, sort_keys=True) + "\n")
    return path


def markdown(result: ProfileResult) -> str:
    device, bundle = result.device, result.bundle
    names = list(result.modules)
    rows = [
        ("latency p50 (ms)", lambda m: f"{m.latency_ms['p50']:.3f}"),
        ("latency p90 (ms)", lambda m: f"{m.latency_ms['p90']:.3f}"),
        ("latency p99 (ms)", lambda m: f"{m.latency_ms['p99']:.3f}"),
        ("load (ms)", lambda m: f"{m.load_ms:.1f}"),
        ("peak RSS (MiB)", lambda m: f"{m.peak_rss_kb / 1024:.1f}"),
        ("power (W)", lambda m: "n/a" if m.power_w is None else f"{m.power_w:.2f}"),
        ("energy / inference (mJ)", lambda m: "n/a" if m.energy_mj_per_inference is None else f"{m.energy_mj_per_inference:.2f}"),
        ("cosine to reference", lambda m: f"{m.cosine_to_reference:.4f} (min {m.min_cosine})"),
        ("output check", lambda m: "pass" if m.output_ok else "FAIL"),
    ]
    lines = [
        f"# edgeclip profile: {bundle['name']} on {result.host}",
        "",
        f"- Device: {device.describe()}",
        f"- Kernel: {device.kernel}; governor: {device.governor or 'n/a'}; "
        f"temperature: {'n/a' if device.temperature_c is None else f'{device.temperature_c:.1f} °C'}",
        f"- Bundle: target {bundle['target'].get('name', '?')} ({bundle['target'].get('arch', '?')}), "
        f"version {bundle['version']}, {bundle['bytes'] / 1e6:.2f} MB",
        f"- Runs per module: {result.runs}",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    lines += [f"| {label} | " + " | ".join(cell(result.modules[n]) for n in names) + " |" for label, cell in rows]
    if result.ratios:
        lines += ["", "| fp32 / ternary | ratio |", "|---|---|"]
        lines += [f"| {key.replace('_', ' ')} | {value:.2f}× |" for key, value in result.ratios.items()]
    lines += ["", f"Output check: {'passed' if result.passed else 'FAILED'}.", ""]
    return "\n".join(lines)


def plot(result: ProfileResult, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.modules)
    quantiles = ("p50", "p90", "p99")
    latency = folder / "latency.png"
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [result.modules[name].latency_ms[q] for q in quantiles]
        ax.bar([x + i * width for x in range(len(quantiles))], values, width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(quantiles))], quantiles)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Latency distribution on {result.host}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(latency, dpi=100)
    plt.close(fig)

    memory = folder / "memory.png"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(names, [result.modules[n].peak_rss_kb / 1024 for n in names], color=["tab:blue", "tab:orange"][: len(names)])
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title("Peak memory")
    fig.tight_layout()
    fig.savefig(memory, dpi=100)
    plt.close(fig)
    return [latency, memory]


def write_report(result: ProfileResult, folder) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.md"
    report.write_text(markdown(result))
    latency, memory = plot(result, folder)
    return {"json": write_json(result, folder / "profile.json"), "markdown": report, "latency": latency, "memory": memory}
