"""Options several verbs share, each defined once: quantization, towers and their compile knobs.

Only the standard library is imported here: `edgeclip VERB --help` must not load torch or tvm.
"""

from __future__ import annotations

POLICIES = ("q-all", "q-ffn", "q-attn")  # edgeclip.quant.policy.POLICIES (a test keeps the two equal)
ACTS = ("int8", "fp32")  # activation modes of the ternary kernels


def add_quant_options(p, skip: bool = False, scales: bool = False) -> None:
    """--policy, --granularity, --beta (and --skip, --scales): how a model is ternarized."""
    p.add_argument("--policy", default="q-all", choices=POLICIES,
                   help="which layers become ternary (default q-all: every linear and embedding)")
    p.add_argument("--granularity", default="channel", help="'tensor', 'channel' (default) or 'group:ROWS'")
    p.add_argument("--beta", type=float, default=None, help="ternary scale = beta * mean|W| (default 1.5)")
    if skip:
        p.add_argument("--skip", action="append", default=[], help="module name (prefix) to keep in float; repeatable")
    if scales:
        p.add_argument("--scales", default="fixed", choices=("fixed", "learned"),
                       help="'fixed': every step rescales trits to beta * mean|W| (default); 'learned': "
                            "the scales start there and are trained with the weights")


def quant_config(args):
    """The TernaryConfig the quantization options describe."""
    from edgeclip.quant import DEFAULT_BETA, TernaryConfig, parse_granularity

    return TernaryConfig(policy=args.policy, granularity=parse_granularity(args.granularity),
                         beta=DEFAULT_BETA if args.beta is None else args.beta, skip=tuple(getattr(args, "skip", ())),
                         learn_scales=getattr(args, "scales", "fixed") == "learned")


def add_model_option(p, help_text: str = "edgeclip checkpoint, model directory, 'minilm' or 'demo'") -> None:
    p.add_argument("--model", required=True, help=help_text)


def add_tower_options(p, towers_default: str | None = None, act: bool = True, threads: str | None = None,
                      seq_len: bool = True) -> None:
    """--towers, and as a verb needs them --act, --threads (`threads`: what they are for) and --seq-len."""
    default = f" (default {towers_default})" if towers_default else " (default: all the model has)"
    p.add_argument("--towers", default=towers_default, help=f"comma list, e.g. image,text{default}")
    if act:
        p.add_argument("--act", default="int8", choices=ACTS, help="activation mode of ternary kernels (default int8)")
    if threads:
        p.add_argument("--threads", type=int, default=None, help=f"threads {threads} (default: all the board's cores)")
    if seq_len:
        p.add_argument("--seq-len", type=int, default=None,
                       help="static text length (default: the family's context, 77 for CLIP, 128 for MiniLM)")


def towers_from(args) -> list[str] | None:
    """--towers as a list; None when left out (all the model has)."""
    if not args.towers:
        return None
    return [t.strip() for t in args.towers.split(",") if t.strip()]
