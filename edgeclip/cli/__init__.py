"""The `edgeclip` command. Each verb's module here parses its options (shared ones are defined
once, in `options`) and calls one library function; heavy imports (torch, transformers, tvm,
paramiko) happen inside the verbs, so `edgeclip --help` and `edgeclip VERB --help` load none.
"""

from __future__ import annotations

import argparse

from edgeclip import __version__, console
from edgeclip.cli.bundles import add_bundle_commands
from edgeclip.cli.demo import add_demo_command
from edgeclip.cli.device import add_device_commands
from edgeclip.cli.flash import add_flash_command
from edgeclip.cli.lowering import add_lower_commands
from edgeclip.cli.models import add_model_commands
from edgeclip.cli.remote import add_remote_commands
from edgeclip.cli.training import add_training_commands
from edgeclip.errors import EdgeclipError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeclip",
        description="Ternary CLIP and embedding encoders for edge devices.",
        epilog="Run 'edgeclip VERB --help' for the options of one verb.",
    )
    parser.add_argument("--version", action="version", version=f"edgeclip {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    add_model_commands(verbs)
    add_demo_command(verbs)
    add_training_commands(verbs)
    add_lower_commands(verbs)
    add_bundle_commands(verbs)
    add_device_commands(verbs)
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

