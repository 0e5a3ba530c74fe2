"""`edgeclip targets | build | run | verify`: boards, device bundles, and using a bundle here."""

from __future__ import annotations

import json

from edgeclip.cli.options import add_tower_options, towers_from


def add_bundle_commands(subparsers) -> None:
    p = subparsers.add_parser("targets", help="list the boards bundles can be built for, or show one",
                              description="Boards come from edgeclip's targets/ and $EDGECLIP_TARGETS_DIR.")
    p.add_argument("action", nargs="?", choices=["show"], help="`show NAME` prints one board")
    p.add_argument("name", nargs="?", help="board name for `show`")
    p.set_defaults(func=run_targets)

    p = subparsers.add_parser("build", help="compile a checkpoint into a self-contained device bundle",
                              description="Write DIR/<model>-<target>.edgeclip: compiled towers, the target's TVM "
                                          "runtime libraries, a native runner and reference data.")
    p.add_argument("--target", required=True, help="board name (see `edgeclip targets`)")
    p.add_argument("--model", required=True, help="edgeclip checkpoint directory (ternary CLIP)")
    add_tower_options(p, towers_default="image,text", act=False, seq_len=False)
    p.add_argument("--baseline", choices=["fp32"], help="also bundle an fp32 baseline module for comparison")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.set_defaults(func=run_build)

    p = subparsers.add_parser("run", help="run a bundle here: classify an image, embed text, or profile",
                              description="Without --image/--text, print the runner's JSON profile.")
    p.add_argument("bundle", help="a .edgeclip bundle")
    p.add_argument("--image", help="image file to classify (with --labels)")
    p.add_argument("--labels", help='comma-separated labels, e.g. "a cat,a dog"')
    p.add_argument("--text", help="text to embed (prints the embedding as JSON)")
    p.add_argument("--emulate", action="store_true", help="run an aarch64 bundle under qemu-user (checking only)")
    p.add_argument("--runs", type=int, default=None, help="timed runs when profiling (default 10)")
    p.add_argument("--module", choices=["ternary", "fp32"],
                   help="the variant to run (default: ternary for --image/--text; every variant when profiling)")
    p.set_defaults(func=run_run)

    p = subparsers.add_parser("verify", help="check a bundle's hashes, schema and architecture without running it")
    p.add_argument("bundle", help="a .edgeclip bundle")
    p.add_argument("--arch", help="also require this architecture (as `uname -m` prints it)")
    p.set_defaults(func=run_verify)


def run_targets(args) -> None:
    from edgeclip.errors import TargetError
    from edgeclip.targets import list_targets, load_target

    if args.action == "show":
        if not args.name:
            raise TargetError("`edgeclip targets show` needs a board name; see `edgeclip targets`")
        target = load_target(args.name)
        print(json.dumps({**target.to_dict(), "file": str(target.source)}, indent=2))
        return
    for target in list_targets():
        gpu = f" + CUDA {target.cuda_arch}" if target.cuda_arch else ""
        print(f"{target.name:18} {target.arch:8} {target.kernel_family:12}{gpu:12} {target.description}")


def run_build(args) -> None:
    from edgeclip.bundle.build import build_bundle

    path = build_bundle(args.model, args.target, args.out, towers=tuple(towers_from(args)), baseline=args.baseline)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def run_run(args) -> None:
    from edgeclip.bundle import local
    from edgeclip.errors import BundleError

    _refuse_mixed_modes(args)
    module = args.module or "ternary"
    if args.image:
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
        if not labels:
            raise BundleError(f"--labels {args.labels!r} names no label; pass e.g. --labels \"a cat,a dog\"")
        for label, prob in local.classify(args.bundle, args.image, labels, emulate=args.emulate, module=module):
            print(f"{prob:7.2%}  {label}")
    elif args.text is not None:
        embedding = local.embed_text(args.bundle, args.text, emulate=args.emulate, module=module)
        print(json.dumps(embedding.reshape(-1).tolist()))
    else:
        runs = 10 if args.runs is None else args.runs
        print(json.dumps(local.profile(args.bundle, runs=runs, module=args.module, emulate=args.emulate)))


def _refuse_mixed_modes(args) -> None:
    """`run` does one of three things; a flag that belongs to another is an error, never ignored."""
    from edgeclip.errors import BundleError

    if args.image and args.text is not None:
        raise BundleError("--image classifies and --text embeds; give one of them")
    if args.image and not args.labels:
        raise BundleError("--image needs --labels \"a,b,c\" to classify against")
    if args.labels and not args.image:
        raise BundleError("--labels goes with --image (the image to classify); without --image, run profiles")
    if args.runs is not None and (args.image or args.text is not None):
        raise BundleError("--runs sets the timed runs of a profile; it does nothing with --image or --text")


def run_verify(args) -> None:
    from edgeclip.formats.bundle import verify_bundle

    manifest = verify_bundle(args.bundle, arch=args.arch)
    target = manifest.get("target", {})
    print(f"{args.bundle}: OK ({len(manifest['members'])} members, schema {manifest['schema_version']}, "
          f"target {target.get('name')} / {target.get('arch')})")
