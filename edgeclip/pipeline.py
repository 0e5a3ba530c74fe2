"""Whole-pipeline steps the CLI verbs call: each reads and writes files so it can be re-run alone."""

from __future__ import annotations

from pathlib import Path

from edgeclip.errors import ModelError
from edgeclip.quant import QuantReport, TernaryConfig, model_stats, non_finite, quantize


def ternarize_source(source: str, config: TernaryConfig, out, force: bool = False) -> tuple[QuantReport, Path]:
    """Plain post-training ternarization of a teacher, saved as a packed checkpoint (`force`: even
    over a directory that holds a model, the teacher's own included)."""
    from edgeclip.models.checkpoint import check_writable
    from edgeclip.models.model_io import save_model
    from edgeclip.models.sources import load_source

    check_writable(Path(out), replace=force)
    model, family, arch = load_source(source)
    broken = non_finite(model)
    if broken:
        raise ModelError(f"{source}: {len(broken)} weights hold NaN or infinite values ({', '.join(broken[:3])}); "
                         "ternarizing them would give a model that outputs NaN: fix or re-export the teacher")
    report = quantize(model, config)
    return report, save_model(model, out, family, arch, config, replace=force)


def inspect_checkpoint(directory) -> dict:
    """model_stats of the rebuilt model, plus what the files weigh on disk."""
    from edgeclip.models.model_io import load_model

    model, config = load_model(directory)
    stats = model_stats(model)
    on_disk = sum(f.stat().st_size for f in Path(directory).iterdir() if f.is_file())
    quant = config.get("quant") or {}
    return {
        "family": config["family"],
        "policy": quant.get("policy", "none"),
        **stats,
        "checkpoint_bytes": on_disk,
        "compression_on_disk_vs_fp32": stats["fp32_size_bytes"] / on_disk,
    }
