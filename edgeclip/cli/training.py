"""`edgeclip train-teacher`, `train` and `eval` (the work is in `edgeclip.training`).

Under `torchrun --nproc_per_node N -m edgeclip.cli train ...` the same verb trains with DDP.
"""

from __future__ import annotations

import json

from edgeclip import console
from edgeclip.cli.options import add_quant_options, quant_config
from edgeclip.training.defaults import EMBEDDING_TRAINING, STUDENT_TRAINING, TEACHER_TRAINING, TrainConfig

LOSS_HELP = "weight of the {} loss (0 switches it off; default {})"
BUDGET_STEP_LIMIT = 10**9  # `--time-budget` without `--steps`: the budget alone ends the run


def add_training_commands(verbs) -> None:
    _add_train_teacher(verbs)
    _add_train(verbs)
    _add_eval(verbs)


def _add_schedule_options(p, schedules: dict[str, TrainConfig]) -> None:
    """Left out, each option keeps the value of the verb's built-in schedule (`schedules`: one per
    kind of teacher, by name; the help shows each)."""

    def shown(help_text: str, field: str) -> str:
        values = {kind: getattr(config, field) for kind, config in schedules.items()}
        if len(set(values.values())) == 1:
            return f"{help_text} (default {next(iter(values.values()))})"
        return f"{help_text} (default {', '.join(f'{value} for {kind}' for kind, value in values.items())})"

    p.add_argument("--steps", type=int, default=None, help=shown("optimizer steps", "steps"))
    p.add_argument("--batch-size", type=int, default=None,
                   help=shown("global batch size, split over torchrun ranks", "batch_size"))
    p.add_argument("--lr", type=float, default=None, help=shown("peak learning rate of AdamW", "lr"))
    p.add_argument("--warmup", type=int, default=None, help=shown("warm-up steps", "warmup_steps"))
    p.add_argument("--seed", type=int, default=None, help=shown("seed of every random draw", "seed"))
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help=shown("save trainer state every N steps", "checkpoint_every"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.csv)")


def _schedule_changes(args) -> dict:
    chosen = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": args.warmup,
              "seed": args.seed, "checkpoint_every": args.checkpoint_every}
    return {k: v for k, v in chosen.items() if v is not None}


def _schedule(args, base):
    from dataclasses import replace

    return replace(base, **_schedule_changes(args))


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """'600', '600s', '10m', '1.5h' -> seconds."""
    from edgeclip.errors import TrainingError

    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise TrainingError(f"{option} {text!r} is not a positive duration; write e.g. 600, 600s, 10m or 1.5h")
    return seconds


def parse_eval_every(text: str):
    """'200' -> every 200 steps; '90s', '2m' -> every so much training time."""
    from edgeclip.training.loop import EvalEvery

    if text.isdigit():
        return EvalEvery(steps=int(text))
    return EvalEvery(seconds=parse_duration(text, "--eval-every"))


def _add_train_teacher(verbs) -> None:
    p = verbs.add_parser(
        "train-teacher",
        help="train and cache the built-in Fashion-MNIST CLIP teacher ('demo')",
        description="Small ViT + frozen all-MiniLM-L6-v2 text tower, trained contrastively on the Fashion-MNIST "
        "train split; cached under $EDGECLIP_CACHE (default ~/.cache/edgeclip)/teachers/.",
    )
    p.add_argument("--out", default=None, help="checkpoint directory (default: the cache, used by --teacher demo)")
    p.add_argument("--force", action="store_true", help="retrain even if a cached teacher exists")
    _add_schedule_options(p, {"": TEACHER_TRAINING})
    p.set_defaults(func=_train_teacher)


def _add_train(verbs) -> None:
    p = verbs.add_parser(
        "train",
        help="quantization-aware training of a ternary student with distillation",
        description="CLIP teachers: task + CRD + ICL + FD losses on image-text data. Embedding teachers "
        "('minilm', BERT directories): self-taught distillation on the built-in sentence corpus.",
    )
    p.add_argument("--teacher", required=True, help="'demo', 'minilm', an HF CLIPModel/BERT directory or a float checkpoint")
    p.add_argument("--data", default=None,
                   help="'fashion-mnist', captions .csv/.jsonl, .tar shard or shard directory; 'fortunes' for "
                   "embedding models (default: fashion-mnist for CLIP, fortunes otherwise)")
    add_quant_options(p, scales=True)
    p.add_argument("--out", required=True, help="checkpoint directory to write (trainer state goes to OUT.train/)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.train/train_state.pt")
    p.add_argument("--force", action="store_true", help="replace a model already in --out")
    for name, default in (("task", 1.0), ("crd", 1.0), ("icl", 1.0), ("fd", 2000.0)):
        p.add_argument(f"--{name}-weight", type=float, default=default, help=LOSS_HELP.format(name.upper(), default))
    p.add_argument("--tau", type=float, default=1.0, help="CRD temperature (default 1.0)")
    p.add_argument("--max-length", type=int, default=48, help="token limit for sentence distillation (default 48)")
    p.add_argument("--token-weight", type=float, default=1.0,
                   help="weight of the token-state term of sentence distillation (0 switches it off; default 1)")
    p.add_argument("--time-budget", default=None,
                   help="stop after this much training wall time, e.g. 600, 10m, 1.5h (evaluation not counted; "
                   "summed over --resume). Without --steps the learning-rate cosine runs over the budget and steps "
                   "are unlimited; with --steps it follows the steps and the budget only stops the run")
    p.add_argument("--eval-every", default=None,
                   help="embedding teachers: score the held-out sentences every N steps (e.g. 200) or every so "
                   "much training time (e.g. 2m), and at the end, into metrics.csv (eval_* columns) and "
                   "evaluation.png; evaluation time is not charged to --time-budget")
    _add_schedule_options(p, {"CLIP teachers": STUDENT_TRAINING, "embedding teachers": EMBEDDING_TRAINING})
    p.set_defaults(func=_train)


def _add_eval(verbs) -> None:
    p = verbs.add_parser(
        "eval",
        help="zero-shot classification / retrieval of a CLIP model, or fidelity of a sentence encoder",
        description="Writes clip_benchmark-shaped JSON: dataset, model, task, metrics (headline metrics also at "
        "the top level: top1/top5, or mean_cosine/neighbour_recall_at_10).",
    )
    p.add_argument("--model", required=True, help="edgeclip checkpoint, 'demo', 'minilm' or a model directory")
    p.add_argument("--teacher", default=None, help="reference for embedding fidelity (default 'minilm')")
    p.add_argument("--data", default=None, help="'fashion-mnist' (test split), captions table or tar shards; "
                   "sentence encoders: 'fortunes' (its 1,000 held-out sentences, the default) or 'wordnet' "
                   "(1,000 WordNet glosses, a text source training never sees)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--json", default=None, help="write the result JSON here")
    p.set_defaults(func=_eval)


def _train_teacher(args) -> None:
    from edgeclip.training.teacher import train_teacher

    result = train_teacher(args.out, _schedule(args, TEACHER_TRAINING), force=args.force, progress=not args.no_progress)
    if result["cached"]:
        print(f"built-in teacher already trained: {result['path']} (use --force to retrain)")
        return
    print(f"teacher: top-1 {100 * result['top1']:.2f} %, top-5 {100 * result['top5']:.2f} % on Fashion-MNIST test; "
          f"trained in {result['train_seconds']:.0f} s; wrote {result['path']}")


def _train(args) -> None:
    from edgeclip.training.losses import LossWeights
    from edgeclip.training.student import StudentSpec, run_dir_for, train_student

    spec = StudentSpec(
        teacher=args.teacher,
        data=args.data,
        quant=quant_config(args),
        losses=LossWeights(task=args.task_weight, crd=args.crd_weight, icl=args.icl_weight, fd=args.fd_weight,
                           tau=args.tau),
        max_length=args.max_length,
        token_weight=args.token_weight,
    )
    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    console.move_log(run_dir_for(args.out) / "log.txt")
    changes = _schedule_changes(args)
    paced = budget is not None and args.steps is None
    if paced:
        changes["steps"] = BUDGET_STEP_LIMIT
    summary = train_student(spec, changes, args.out, resume=args.resume, force=args.force, progress=not args.no_progress,
                            time_budget_s=budget, pace_by_budget=paced,
                            eval_every=0 if args.eval_every is None else parse_eval_every(args.eval_every))
    if summary["rank"] == 0:
        stop = " (time budget reached)" if summary["stopped_by"] == "time_budget" else ""
        print(f"trained {summary['steps_this_run']} steps{stop} in {summary['seconds_this_run']:.0f} s "
              f"({summary['skipped_samples']} unreadable samples skipped); "
              f"{100 * summary['ternary_fraction_linear']:.1f} % of linear weights ternary; wrote {args.out}")


def _eval(args) -> None:
    from edgeclip.training.evaluate import write_json
    from edgeclip.training.student import evaluate

    result = evaluate(args.model, args.data, args.teacher, args.limit)
    if args.json:
        write_json(args.json, result)
    print(json.dumps(result["metrics"], sort_keys=True))
