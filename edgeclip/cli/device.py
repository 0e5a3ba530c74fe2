"""`edgeclip classify | embed | tokenize | index | search BUNDLE ...`: the device runner's application modes, run
here with the runner's own arguments (the work is in `edgeclip.bundle.runner_modes`).

The options are the runner's, passed through in the order given; file paths (images, label and
text files, `--out`) are made absolute first, so they mean what they meant in the caller's folder.
With `--host BOARD` the runner of the bundle `edgeclip deploy` installed there runs instead, on
copies of those files (`edgeclip.remote.modes`).
"""

from __future__ import annotations

import argparse
import os

from edgeclip.cli.remote import HOST_HELP, add_ssh_options, options_from
from edgeclip.errors import RemoteError

_PATH_INPUTS = ("--image", "--text-file", "--index", "--vector")


class _InOrder(argparse.Action):
    """Collects the runner's repeatable inputs as (flag, value) pairs, keeping their order."""

    def __call__(self, parser, namespace, values, option_string=None):
        values = values if isinstance(values, list) else [values]
        if option_string in _PATH_INPUTS:
            values = [os.path.abspath(v) for v in values]
        namespace.inputs = [*(namespace.inputs or []), *((option_string, v) for v in values)]


def add_device_commands(verbs) -> None:
    p = _verb(verbs, "classify", "rank labels for images with a bundle, as `edgeclip-runner classify` does on the board",
              "One JSON line per image: {\"image\": PATH, \"top\": [{\"label\": L, \"p\": P}, ...]}. Without "
              "--labels/--labels-file the labels baked in by `edgeclip build --labels` are used.")
    _inputs(p, "--image", "image files (JPEG or PNG) to classify; repeatable", nargs="+")
    p.add_argument("--labels", help='comma-separated labels to rank, e.g. "a cat,a dog" (default: the baked labels)')
    p.add_argument("--labels-file", type=os.path.abspath, help="a UTF-8 file with one label a line")
    p.add_argument("--prompt", help='text each label is embedded in, with {} for the label, e.g. "a photo of a {}"')
    p.add_argument("--top", type=int, help="how many labels to print per image")
    _common(p)

    p = _verb(verbs, "embed", "L2-normalised embeddings of images or texts with a bundle (`edgeclip-runner embed`)",
              "JSON lines {\"image\"|\"text\": ..., \"embedding\": [...]} in input order, or with --out a float32 "
              "[N, D] .npy and one line {\"out\": PATH, \"count\": N, \"dim\": D}. A folder means every JPEG/PNG "
              "in it, sorted by name.")
    _inputs(p, "--image", "image files or folders; repeatable", nargs="+")
    _inputs(p, "--text", "a text to embed; repeatable")
    _inputs(p, "--text-file", "a UTF-8 file with one text a line; repeatable")
    p.add_argument("--out", type=os.path.abspath, help="write the embeddings to this .npy file")
    _batch(p)
    _common(p)

    p = _verb(verbs, "tokenize", "the text tower's token ids, from the bundle's own tokenizer (`edgeclip-runner tokenize`)",
              "One JSON line {\"ids\": [...], \"mask\": [...]} per text, exactly what the text tower sees.")
    _inputs(p, "--text", "a text to tokenize; repeatable")
    _inputs(p, "--text-file", "a UTF-8 file with one text a line; repeatable")
    _where(p)

    p = _verb(verbs, "index", "embed a corpus into a search index file (`edgeclip-runner index`)",
              "Every line of --text-file (or every image) embedded by the bundle and stored quantized with its text "
              "or path; prints {\"out\": INDEX, \"count\": N, \"dim\": D, \"encoding\": E}. With --host the "
              "board embeds and the index is fetched to --out here.")
    _inputs(p, "--text-file", "a UTF-8 file, one item a line")
    _inputs(p, "--image", "image files or folders", nargs="+")
    p.add_argument("--out", type=os.path.abspath, required=True, help="the index file to write")
    p.add_argument("--encoding", choices=("int8", "binary"),
                   help="int8: every row scored in int8 (default); binary: sign bits scanned first, 8x fewer bytes")
    _batch(p)
    _common(p)

    p = _verb(verbs, "search", "the k nearest items of an index to a text or image (`edgeclip-runner search`)",
              "One JSON line {\"query\"|\"image\": ..., \"results\": [{\"id\", \"line\", \"text\" | \"path\", "
              "\"score\"}, ...], \"ms\": T}. The index must come from this bundle (same tower module and variant). "
              "With --host the index file is copied to the board for the run.")
    p.add_argument("--index", action=_InOrder, dest="inputs", required=True, help="an index made by `edgeclip index`")
    _inputs(p, "--query", "a text to look up")
    _inputs(p, "--image", "an image file to look up")
    p.add_argument("--k", type=int, help="how many items to return (default 10)")
    p.add_argument("--rerank", type=int, help="rows of the first pass re-scored finely (default 100)")
    _common(p)


def _verb(verbs, name: str, help_text: str, description: str):
    p = verbs.add_parser(name, help=help_text, description=description)
    p.add_argument("bundle", help="a .edgeclip bundle")
    p.set_defaults(func=_run, inputs=None)
    return p


def _inputs(p, flag: str, help_text: str, nargs=None) -> None:
    p.add_argument(flag, action=_InOrder, dest="inputs", nargs=nargs, help=help_text, metavar=flag.lstrip("-").upper())


def _batch(p) -> None:
    p.add_argument("--batch", type=int, help="images (or a sentence bundle's texts) a tower call, up to the bundle's compiled sizes (default 1)")


def _common(p) -> None:
    p.add_argument("--variant", metavar="NAME", help="the variant of the bundle's variants table to run "
                   "(default: the first, best, one the CPU runs)")
    p.add_argument("--threads", type=int, help="threads (default: the machine's physical cores)")
    _where(p)


def _where(p) -> None:
    """Here (natively or under qemu-user) or on a board over SSH."""
    p.add_argument("--emulate", action="store_true", help="run an aarch64 bundle's runner under qemu-user")
    board = p.add_argument_group("on a board over SSH", "run the bundle `edgeclip deploy` installed there, on "
                                 "copies of the input files; the answers name your files")
    board.add_argument("--host", help=HOST_HELP)
    add_ssh_options(board)


_PASSED = ("labels", "labels_file", "prompt", "top", "out", "encoding", "batch", "k", "rerank", "variant", "threads")


def _run(args) -> None:
    pairs = list(args.inputs or [])
    for name in _PASSED:
        value = getattr(args, name, None)
        if value is not None:
            pairs.append(("--" + name.replace("_", "-"), str(value)))
    if args.host is not None:
        from edgeclip.remote.modes import run_on_board

        if args.emulate:
            raise RemoteError("--emulate runs the bundle here under qemu-user and --host runs it on the board; "
                              "give one of them")
        run_on_board(args.bundle, args.host, args.verb, pairs, options_from(args))
        return
    from edgeclip.bundle.runner_modes import run_mode

    run_mode(args.bundle, args.verb, [item for pair in pairs for item in pair], emulate=args.emulate)
