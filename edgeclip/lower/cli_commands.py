"""The lowering verbs, for `edgeclip.cli` to register: compile, export (ONNX)."""

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


def _export(args) -> None:
    from edgeclip.export.onnx_export import export_onnx

    for path in export_onnx(args.model, args.out, towers=_towers(args.towers), seq_len=args.seq_len):
        print(f"wrote {path}")
