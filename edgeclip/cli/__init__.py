"""The `edgeclip` command: argument parsing only; each verb calls one library function.

Heavy imports (torch, transformers, tvm) happen inside the verbs so `edgeclip --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeclip import __version__, console
from edgeclip.errors import EdgeclipError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeclip",
        description="Ternary CLIP and embedding encoders for edge devices.",
        epilog="Run 'edgeclip VERB --help' for the options of one verb.",
    )
    parser.add_argument("--version", action="version", version=f"edgeclip {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_ternarize(verbs)
    _add_inspect(verbs)
    _add_demo(verbs)
    from edgeclip.bundle.cli_commands import add_bundle_commands
    from edgeclip.flash.cli_command import add_flash_command
    from edgeclip.lower.cli_commands import add_lower_commands
    from edgeclip.remote.cli_commands import add_remote_commands
    from edgeclip.training.cli_commands import add_training_commands

    add_training_commands(verbs)
    add_lower_commands(verbs)
    add_bundle_commands(verbs)
    add_flash_command(verbs)
    add_remote_commands(verbs)
    for p in (parser, *verbs.choices.values()):
        _add_console_options(p, top=p is parser)
    return parser


def _add_console_options(p: argparse.ArgumentParser, top: bool) -> None:
    """--debug and --verbose, accepted before or after the verb."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("--debug", action="store_true", default=default, help="show full tracebacks on errors")
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="let TVM, torch, transformers and onnxruntime print to the console (by default their "
                   "warnings go to a log file: the run folder's log.txt, else ~/.cache/edgeclip/logs/)")


def _add_ternarize(verbs) -> None:
    p = verbs.add_parser(
        "ternarize",
        help="post-training ternarization of a model (no training)",
        description="Swap the layers a policy selects for ternary ones and save a packed checkpoint.",
    )
    p.add_argument("--model", required=True, help="HF CLIPModel directory, BERT/MiniLM directory, 'minilm' or 'demo'")
    p.add_argument("--policy", default="q-all", choices=["q-all", "q-ffn", "q-attn"],
                   help="which layers become ternary (default q-all: every linear and embedding)")
    p.add_argument("--granularity", default="channel", help="'tensor', 'channel' (default) or 'group:ROWS'")
    p.add_argument("--beta", type=float, default=None, help="scale = beta * mean|W| (default 1.5)")
    p.add_argument("--skip", action="append", default=[], help="module name (prefix) to keep in float; repeatable")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.set_defaults(func=_ternarize)


def _add_inspect(verbs) -> None:
    p = verbs.add_parser("inspect", help="show how much of a checkpoint is ternary and what it weighs")
    p.add_argument("checkpoint", help="edgeclip checkpoint directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_inspect)


def _add_demo(verbs) -> None:
    p = verbs.add_parser(
        "demo",
        help="the whole pipeline on the built-in Fashion-MNIST CLIP, with a report",
        description="Teacher (cached) -> q-all PTQ and QAT + distillation -> evaluation -> bundles for this "
        "machine and rpi4 -> predictions on real images -> profiles (host; rpi4 on an emulated aarch64 device) "
        "-> OUT/report.md with plots and JSON. Measured on an idle 2-core x86 host: about 7 minutes the first time, "
        "under a minute with warm caches.",
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke run (about 2 minutes cold, 30 s warm): tiny teacher and student budgets, smaller "
                   "evaluation, no fp32 baseline")
    p.add_argument("--out", default=None, help="run folder (default runs/demo-<timestamp>)")
    p.set_defaults(func=_demo)


def _ternarize(args) -> None:
    from edgeclip.pipeline import ternarize_source
    from edgeclip.quant import DEFAULT_BETA, TernaryConfig, parse_granularity

    config = TernaryConfig(
        policy=args.policy,
        granularity=parse_granularity(args.granularity),
        beta=DEFAULT_BETA if args.beta is None else args.beta,
        skip=tuple(args.skip),
    )
    report, path = ternarize_source(args.model, config, args.out)
    print(f"{report}\nwrote {path}")


def _inspect(args) -> None:
    from edgeclip.pipeline import inspect_checkpoint

    stats = inspect_checkpoint(args.checkpoint)
    print(json.dumps(stats) if args.json else format_stats(stats))


def _demo(args) -> None:
    from edgeclip.demo.run import run_demo

    run_demo(args.out, quick=args.quick, debug=args.debug)


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


def main(argv: list[str] | None = None) -> int:
    """Run one verb. As the `edgeclip` command (no argv), other libraries' warnings go to a log
    unless --verbose; called from Python with argv, the caller's streams are left as they are."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is not None or args.verbose:
        return _run(args)
    with console.quiet(console.default_log(args.verb)):
        return _run(args)


def _run(args) -> int:
    try:
        args.func(args)
    except EdgeclipError as err:
        if args.debug:
            raise
        print(f"edgeclip {args.verb}: error: {err}{_log_hint()}", file=console.stream())
        return 1
    except KeyboardInterrupt:
        print(f"edgeclip {args.verb}: interrupted", file=console.stream())
        return 130
    return 0


def _log_hint() -> str:
    log = console.log_path()
    return f" (other output in {log})" if log is not None and log.stat().st_size else ""


if __name__ == "__main__":
    sys.exit(main())
