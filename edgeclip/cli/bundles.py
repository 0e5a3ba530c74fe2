"""`edgeclip targets | build | run | verify`: boards, device bundles, and using a bundle here."""

from __future__ import annotations

import argparse
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
    p.add_argument("--model", required=True, help="edgeclip checkpoint directory (ternary CLIP or sentence encoder)")
    add_tower_options(p, act=False)
    p.add_argument("--baseline", choices=["fp32"], help="also bundle an fp32 baseline module for comparison")
    p.add_argument("--labels", help='labels to bake in for classifying on the device: a file with one label a line, '
                   'or "a,b,c" (embedded here by the text tower, also with --towers image)')
    p.add_argument("--prompt", default=None,
                   help='text each label is embedded in, with {} for the label, e.g. "a photo of a {}" (default "{}")')
    p.add_argument("--batch", default="1,8", metavar="SIZES",
                   help="batch sizes the image tower (or a sentence encoder's text tower) is compiled for, 1 among "
                        "them (default 1,8; at most 64): `edgeclip-runner embed --batch 8` runs 8 items a call")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.set_defaults(func=run_build)

    p = subparsers.add_parser("run", help="profile a bundle on this machine with its native runner",
                              description="Print the runner's JSON profile: latency, load time, peak memory and "
                                          "agreement with the reference, per variant. To classify images or embed "
                                          "text use `edgeclip classify` / `edgeclip embed`.")
    p.add_argument("bundle", help="a .edgeclip bundle")
    p.add_argument("--emulate", action="store_true", help="run an aarch64 bundle under qemu-user (checking only)")
    p.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    p.add_argument("--variant", metavar="NAME",
                   help="profile only this variant of the bundle's variants table (default: every one)")
    for flag, verb in (("--image", "classify"), ("--labels", "classify"), ("--text", "embed")):
        p.add_argument(flag, help=argparse.SUPPRESS, action=_Moved, dest="moved", verb=verb)
    p.set_defaults(func=run_run, moved=None)

    p = subparsers.add_parser("verify", help="check a bundle's hashes, schema and architecture without running it")
    p.add_argument("bundle", help="a .edgeclip bundle")
    p.add_argument("--arch", help="also require this architecture (as `uname -m` prints it)")
    p.add_argument("--cpu-features", metavar="A,B,...",
                   help="also require the bundle to run on a CPU with these features (/proc/cpuinfo names)")
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
    from edgeclip.lower.target import cpu_features

    for target in list_targets():
        arch = "sm_XX" if target.gpu_arch_is_parameter else target.cuda_arch
        gpu = f" + CUDA {arch}" if target.cuda_arch else ""
        print(f"{target.name:18} {target.arch:8} {gpu:12} {target.description}")
        for member in target.variants:  # a fat target's kernel families, best first, and what each needs
            print(f"{'':20}{member.kernel_family:12} needs {','.join(cpu_features(member)) or '-'}")


def run_build(args) -> None:
    from edgeclip.bundle import labels
    from edgeclip.bundle.build import build_bundle, parse_batches
    from edgeclip.errors import BundleError
    from edgeclip.formats.bundle import read_manifest, variant_rows

    if args.prompt is not None and args.labels is None:
        raise BundleError("--prompt goes with --labels (the labels it is put around); pass both or neither")
    baked = None if args.labels is None else labels.parse_labels(args.labels)
    prompt = labels.DEFAULT_PROMPT if args.prompt is None else args.prompt
    batches = parse_batches(args.batch)  # before minutes of compiling
    path = build_bundle(args.model, args.target, args.out, towers=towers_from(args), baseline=args.baseline,
                        labels=baked, prompt=prompt, batches=batches, seq_len=args.seq_len)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    for row in variant_rows(read_manifest(path)):  # a fat bundle's later variants cost only their code
        print(f"  variant {row['name']:22} needs {','.join(row['cpu_features']) or '-'}; "
              f"adds {row['added_bytes'] / 1e6:.2f} MB")


def run_run(args) -> None:
    from edgeclip.bundle import local
    from edgeclip.errors import BundleError

    if args.moved:
        raise BundleError(args.moved)
    print(json.dumps(local.profile(args.bundle, runs=args.runs, module=args.variant, emulate=args.emulate)))


class _Moved(argparse.Action):
    """`run` only profiles now: a flag of its former classify/embed modes is refused with a pointer."""

    def __init__(self, *args, verb: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.verb = verb

    def __call__(self, parser, namespace, values, option_string=None):
        if namespace.moved is None:  # the first such flag names the verb to use
            namespace.moved = (f"`edgeclip run` only profiles; {option_string} belongs to `edgeclip {self.verb} "
                               f"BUNDLE {option_string} ...` (see `edgeclip {self.verb} --help`)")


def run_verify(args) -> None:
    from edgeclip.formats.bundle import verify_bundle

    manifest = verify_bundle(args.bundle, arch=args.arch)
    target = manifest.get("target", {})
    if args.cpu_features is not None:
        check_cpu_features(args.bundle, target, args.cpu_features)
    print(f"{args.bundle}: OK ({len(manifest['members'])} members, schema {manifest['schema_version']}, "
          f"target {target.get('name')} / {target.get('arch')})")


def check_cpu_features(bundle, target: dict, given: str) -> None:
    """`verify --cpu-features`: refuse, as the runner would on that CPU, a bundle needing features
    the list lacks; bundles before schema 4 state none and pass."""
    from edgeclip.errors import BundleError, TargetError
    from edgeclip.formats import cpu_features
    from edgeclip.lower.target import alternatives
    from edgeclip.targets import load_target

    have = cpu_features.parse_list(given)
    absent = cpu_features.missing(target.get("cpu_features", []), have)
    if absent:
        try:
            others = alternatives(load_target(target["name"]))
        except TargetError:  # a bundle for a board this edgeclip does not know: no suggestion
            others = []
        fits = [name for name, needs in others if not cpu_features.missing(needs, have)]
        raise BundleError(f"{bundle}: {cpu_features.refusal(absent, fits)}")
