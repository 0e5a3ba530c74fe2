"""`edgeclip demo`: the whole pipeline on the built-in default (the work is in `edgeclip.demo`)."""

from __future__ import annotations


def add_demo_command(verbs) -> None:
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


def _demo(args) -> None:
    from edgeclip.demo.run import run_demo

    run_demo(args.out, quick=args.quick, debug=args.debug)
