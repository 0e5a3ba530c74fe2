"""`edgeclip ternarize` and `edgeclip inspect`: a model into a ternary checkpoint, and what it weighs."""

from __future__ import annotations

import json

from edgeclip.cli.options import add_quant_options, quant_config


def add_model_commands(verbs) -> None:
    p = verbs.add_parser(
        "ternarize",
        help="post-training ternarization of a model (no training)",
        description="Swap the layers a policy selects for ternary ones and save a packed checkpoint.",
    )
    p.add_argument("--model", required=True,
                   help="HF CLIPModel directory, open_clip folder, BERT/MiniLM directory, 'minilm' or 'demo'")
    add_quant_options(p, skip=True)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--force", action="store_true",
                   help="replace a model already in --out (never done without it: --out may be the teacher itself)")
    p.set_defaults(func=_ternarize)

    p = verbs.add_parser("inspect", help="show how much of a checkpoint is ternary and what it weighs")
    p.add_argument("checkpoint", help="edgeclip checkpoint directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_inspect)


def _ternarize(args) -> None:
    from edgeclip.pipeline import ternarize_source

    report, path = ternarize_source(args.model, quant_config(args), args.out, force=args.force)
    print(f"{report}\nwrote {path}")


def _inspect(args) -> None:
    from edgeclip.pipeline import inspect_checkpoint

    stats = inspect_checkpoint(args.checkpoint)
    print(json.dumps(stats) if args.json else format_stats(stats))


def format_stats(stats: dict) -> str:
    """Two-column table; fractions as percentages, sizes in MB."""
    rows = []
    for key, value in stats.items():
        if isinstance(value, float) and (key.startswith("ternary_fraction") or key == "sparsity"):
            text = f"{100 * value:.1f} %"
        elif key.endswith("size_bytes"):
            text = f"{value / 1e6:.2f} MB"
        elif isinstance(value, float):
            text = f"{value:.2f}"
        else:
            text = str(value)
        rows.append((key, text))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
