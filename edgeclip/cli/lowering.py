"""The lowering verbs, for `edgeclip.cli` to register: compile, tune, export (ONNX)."""

from __future__ import annotations


def add_lower_commands(verbs) -> None:
    p = verbs.add_parser("compile", help="compile a model's towers for a target with TVM",
                         description="torch.export -> Relax -> ternary kernels -> scheduled module per tower.")
    p.add_argument("--model", required=True, help="edgeclip checkpoint, model directory, 'minilm' or 'demo'")
    p.add_argument("--target", default="x86-64", help="board name, see `edgeclip targets` (default x86-64, the host)")
    p.add_argument("-o", "--out", required=True, help="output directory (one .so per tower + compiled.json)")
    p.add_argument("--towers", default=None, help="comma list, e.g. image,text (default: all the model has)")
    p.add_argument("--act", default="int8", choices=["int8", "fp32"], help="activation mode of ternary kernels")
    p.add_argument("--threads", type=int, default=None, help="threads the module is scheduled for (default: all the board's cores)")
    p.add_argument("--seq-len", type=int, default=None, help="static text length (default 77 CLIP, 128 MiniLM)")
    p.set_defaults(func=_compile)

    p = verbs.add_parser("tune", help="tune a model's schedules with meta_schedule on this machine; builds reuse the records",
                         description="meta_schedule on the float remainder (and with --kernels the ternary kernels' knobs) "
                                     "of a model; records go to schedules/<target>/ and builds apply them with zero trials.")
    p.add_argument("--model", required=True, help="edgeclip checkpoint, model directory, 'minilm' or 'demo'")
    p.add_argument("--target", default="x86-64", help="board to tune; it must be this machine (default x86-64, the host)")
    p.add_argument("--kernels", action="store_true", help="also tune the ternary kernels' register blocking")
    p.add_argument("--trials", type=int, default=16, help="measured candidates per task (default 16)")
    p.add_argument("--towers", default=None, help="comma list, e.g. image,text (default: all the model has)")
    p.add_argument("--tasks", default=None, help="comma list of substrings: tune only the tasks whose name has one")
    p.add_argument("--act", default="int8", choices=["int8", "fp32"], help="activation mode of ternary kernels")
    p.add_argument("--threads", type=int, default=None, help="threads the schedules are for (default: all the board's cores)")
    p.add_argument("--seq-len", type=int, default=None, help="static text length (default 77 CLIP, 128 MiniLM)")
    p.set_defaults(func=_tune)

    p = verbs.add_parser("export", help="export a model to a portable format (ONNX)")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--model", required=True, help="edgeclip checkpoint, model directory, 'minilm' or 'demo'")
    p.add_argument("-o", "--out", required=True, help="output directory (one <tower>.onnx per tower)")
    p.add_argument("--towers", default=None, help="comma list, e.g. image,text (default: all the model has)")
    p.add_argument("--seq-len", type=int, default=None, help="static text length")
    p.set_defaults(func=_export)


def _towers(text):
    return None if not text else [t.strip() for t in text.split(",") if t.strip()]


def _compile(args) -> None:
    from edgeclip.lower.build import compile

    compiled = compile(args.model, args.target, towers=_towers(args.towers), act=args.act,
                       threads=args.threads, seq_len=args.seq_len)
    out = compiled.save(args.out)
    for name, tower in compiled.towers.items():
        r = tower.report
        print(f"{name}: {r.linears} linear, {r.convs} conv, {r.embeddings} embedding ternary kernels "
              f"({compiled.target.family}, act={compiled.act}), {tower.compile_seconds:.1f} s")
    print(f"wrote {out}")


def _tune(args) -> None:
    from edgeclip.lower.tune import summary_table, tune

    results = tune(args.model, args.target, towers=_towers(args.towers), kernels=args.kernels, trials=args.trials,
                   act=args.act, threads=args.threads, seq_len=args.seq_len, only=_towers(args.tasks))
    print(summary_table(results))


def _export(args) -> None:
    from edgeclip.export.onnx_export import export_onnx

    for path in export_onnx(args.model, args.out, towers=_towers(args.towers), seq_len=args.seq_len):
        print(f"wrote {path}")
