"""Bundle size, build time and native-runner peak RSS for a CLIP under q-all (not a test).

usage: python bench/bundle.py [--shape vit-b-32|tiny] [--target x86-64] [--runs 5]

Builds `<model>-<target>.edgeclip` with an fp32 baseline from a randomly initialised CLIP of the
given shape, ternarized q-all, and reports: the fp32 safetensors size of the teacher; the model
payload (compiled modules + fixed params) of the ternary and the fp32 variants and the whole tar;
the build time; and, for a host target, the runner's peak RSS ternary versus fp32 (each variant
measured in its own process). Writes bench/results/bundle-<shape>-<target>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from clip_shapes import SHAPES, random_clip_dir

from edgeclip.bundle import local
from edgeclip.bundle.build import build_bundle
from edgeclip.formats.bundle import payload_bytes, read_manifest
from edgeclip.pipeline import ternarize_source
from edgeclip.quant import TernaryConfig
from edgeclip.targets import load_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="vit-b-32")
    parser.add_argument("--target", default="x86-64")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        teacher = random_clip_dir(Path(tmp) / "teacher", args.shape)
        fp32_checkpoint = sum(f.stat().st_size for f in teacher.glob("*.safetensors"))
        _, checkpoint = ternarize_source(str(teacher), TernaryConfig(policy="q-all"), Path(tmp) / f"clip-{args.shape}")
        start = time.perf_counter()
        bundle = build_bundle(checkpoint, args.target, Path(tmp) / "out", baseline="fp32")
        build_s = time.perf_counter() - start
        manifest = read_manifest(bundle)
        result = {
            "shape": args.shape, "target": args.target,
            "fp32_safetensors_bytes": fp32_checkpoint,
            "ternary_payload_bytes": payload_bytes(manifest, "ternary"),
            "fp32_payload_bytes": payload_bytes(manifest, "fp32"),
            "bundle_bytes": bundle.stat().st_size,
            "build_seconds_with_fp32_baseline": round(build_s, 1),
            "load_average_1m_after_build": round(os.getloadavg()[0], 2),  # shared machines: say how busy
        }
        result["payload_compression_vs_fp32_safetensors"] = fp32_checkpoint / result["ternary_payload_bytes"]
        if load_target(args.target).is_host_arch:
            report = local.profile(bundle, runs=args.runs)
            result["runner"] = report
            result["peak_rss_ratio_fp32_over_ternary"] = report["baseline"]["peak_rss_kb"] / report["peak_rss_kb"]
    out = Path(__file__).with_name("results") / f"bundle-{args.shape}-{args.target}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runner"}, indent=2))


if __name__ == "__main__":
    main()
