"""`edgeclip compile | tune | export`: lower a model with TVM, tune its schedules, export ONNX."""

from __future__ import annotations

from edgeclip.cli.options import add_model_option, add_tower_options, towers_from


def add_lower_commands(verbs) -> None:
    p = verbs.add_parser("compile", help="compile a model's towers for a target with TVM",
                         description="torch.export -> Relax -> ternary kernels -> scheduled module per tower.")
    add_model_option(p)
    p.add_argument("--target", default=None, help="board name, see `edgeclip targets` (default: the x86-64 member "
                   "this host runs best, x86-64-vnni or x86-64-v3)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where the towers run: the board's CPU (default) or its NVIDIA GPU (whole tower on the GPU)")
    p.add_argument("--cuda-arch", metavar="sm_XX", default=None,
                   help="the GPU's arch for a target that leaves it open (cuda-host), e.g. sm_90; never read from this machine")
    p.add_argument("-o", "--out", required=True, help="output directory (one .so per tower + compiled.json)")
    add_tower_options(p, threads="the module is scheduled for")
    p.set_defaults(func=_compile)

    p = verbs.add_parser("tune", help="tune a model's schedules with meta_schedule on this machine; builds reuse the records",
                         description="meta_schedule on the float remainder (and with --kernels the ternary kernels' knobs) "
                                     "of a model; records go to schedules/<target>/ and builds apply them with zero trials.")
    add_model_option(p)
    p.add_argument("--target", default=None, help="board to tune; it must be this machine (default: the x86-64 "
                   "member this host runs best)")
    p.add_argument("--kernels", action="store_true", help="also tune the ternary kernels' register blocking")
    p.add_argument("--trials", type=int, default=16, help="measured candidates per task (default 16)")
    p.add_argument("--tasks", default=None, help="comma list of substrings: tune only the tasks whose name has one")
    add_tower_options(p, threads="the schedules are for")
    p.set_defaults(func=_tune)

    p = verbs.add_parser("export", help="export a model to a portable format (ONNX)")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    add_model_option(p)
    p.add_argument("-o", "--out", required=True, help="output directory (one <tower>.onnx per tower)")
    add_tower_options(p, act=False)
    p.set_defaults(func=_export)


def _compile(args) -> None:
    from edgeclip.lower.build import compile
    from edgeclip.lower.target import host_target

    compiled = compile(args.model, args.target or host_target(), towers=towers_from(args), act=args.act,
                       threads=args.threads, seq_len=args.seq_len, device=args.device, cuda_arch=args.cuda_arch)
    out = compiled.save(args.out)
    for name, tower in compiled.towers.items():
        r = tower.report
        print(f"{name}: {r.linears} linear, {r.convs} conv, {r.embeddings} embedding ternary kernels "
              f"({compiled.target.family}, act={compiled.act}), {tower.compile_seconds:.1f} s")
    print(f"wrote {out}")


def _tune(args) -> None:
    from edgeclip.lower.target import host_target
    from edgeclip.lower.tune import summary_table, tune

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    results = tune(args.model, args.target or host_target(), towers=towers_from(args), kernels=args.kernels,
                   trials=args.trials, act=args.act, threads=args.threads, seq_len=args.seq_len, only=tasks)
    print(summary_table(results))


def _export(args) -> None:
    from edgeclip.export.onnx_export import export_onnx

    for path in export_onnx(args.model, args.out, towers=towers_from(args), seq_len=args.seq_len):
        print(f"wrote {path}")
