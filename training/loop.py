"""The training loop shared by QAT, self-taught distillation and the built-in teacher.

An `Objective` says what a batch is and what its loss is; the loop owns everything else: AdamW
with warm-up + cosine, gradient clipping, AMP on CUDA, DistributedDataParallel under torchrun,
checkpoints every N steps with exact resume, a tqdm bar, a CSV log and a PNG of the losses.

Exact resume needs no saved data-loader or RNG state: every batch and every random draw is a
pure function of (seed, step, rank), so step k is the same whether or not the run stopped before it.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import distributed as dist
from torch import nn

from edgeclip.errors import TrainingError

STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "losses.png"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64  # global: split across ranks under torchrun
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    amp: bool = True  # used only on CUDA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Objective(Protocol):
    """What the loop trains. `module` is what DDP wraps; `loss` must call it (not its submodules)."""

    module: nn.Module
    skipped: int  # unreadable samples seen so far

    def batch(self, step: int, batch_size: int, seed: int, rank: int, world: int) -> Any: ...

    def loss(self, module: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict]: ...

    def state_dict(self) -> dict:
        """Whatever besides the model decides later losses (e.g. cached teacher outputs)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed:
        """torchrun sets WORLD_SIZE/RANK; gloo on CPU, NCCL on CUDA."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Average logged values over ranks (logging only; gradients are averaged by DDP)."""
        if self.world == 1 or not values:
            return {k: float(v) for k, v in values.items()}
        names = sorted(values)
        stacked = torch.stack([values[n].detach().float().cpu() for n in names])
        dist.all_reduce(stacked)
        return {n: float(v) / self.world for n, v in zip(names, stacked, strict=True)}

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def pick_device() -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if torch.cuda.is_available() else torch.device("cpu")


def warmup_cosine(config: TrainConfig):
    """LR multiplier: linear warm-up, then cosine down to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        span = max(config.steps - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """No weight decay on biases, norms, and scalars such as the logit scale."""
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 64 + rank


def train(objective: Objective, config: TrainConfig, run_dir, resume: bool = False, stop_after: int | None = None,
          progress: bool = True) -> dict:
    """Run steps [start, steps) (or up to `stop_after`) and return a summary of the run.

    `run_dir` receives train_state.pt (latest checkpoint), metrics.csv and losses.png.
    """
    run_dir = Path(run_dir)
    device = pick_device()
    world = Distributed.from_env(device)
    if config.batch_size % world.world:
        raise TrainingError(f"batch size {config.batch_size} does not split evenly over {world.world} processes")
    module = objective.module.to(device)
    wrapped = _ddp(module, device) if world.world > 1 else module
    optimizer = make_optimizer(module, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, elapsed_before = 0, 0.0
    if resume:
        start, elapsed_before = _load_state(run_dir, module, optimizer, scheduler, scaler, config)
        objective.load_state_dict(_read_atomic(_objective_file(run_dir, world.rank)))
    log = MetricsLog(run_dir / METRICS_FILE, keep_through=start) if world.main else None
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    bar = _progress(start, config.steps, enabled=progress and world.main)
    began = time.perf_counter()
    for step in range(start, end):
        tick = time.perf_counter()
        torch.manual_seed(step_seed(config.seed, step, world.rank))
        batch = objective.batch(step, config.batch_size, config.seed, world.rank, world.world)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            total, parts = objective.loss(wrapped, batch, device)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        logged = world.mean({"loss": total.detach(), **parts})
        rate = config.batch_size / (time.perf_counter() - tick)
        elapsed = elapsed_before + time.perf_counter() - began
        if world.main:
            row = {"step": step + 1, "lr": lr, **logged, "grad_norm": float(grad_norm),
                   "samples_per_s": rate, "skipped": objective.skipped, "elapsed_s": elapsed}
            log.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.4f}", samples_s=f"{rate:.0f}", skipped=objective.skipped)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            # Each rank keeps its own teacher cache; saved first, so a state file never lacks its caches.
            _write_atomic(_objective_file(run_dir, world.rank), objective.state_dict())
            world.barrier()
            if world.main:
                _save_state(run_dir, module, optimizer, scheduler, scaler, config, step + 1, elapsed)
            world.barrier()
    bar.close()
    if world.main:
        plot_losses(run_dir / METRICS_FILE, run_dir / CURVES_FILE)
    return {
        "steps_done": end,
        "steps_this_run": end - start,
        "seconds_this_run": time.perf_counter() - began,
        "skipped_samples": objective.skipped,
        "rank": world.rank,
        "world": world.world,
    }


def _ddp(module: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    # Frozen towers and unused heads (e.g. BERT's pooler) get no gradient; DDP must not wait for them.
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
    )


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True)


# ---- trainer state -------------------------------------------------------------------------------


def _objective_file(run_dir: Path, rank: int) -> Path:
    return run_dir / f"objective_state.rank{rank}.pt"


def _save_state(run_dir: Path, module, optimizer, scheduler, scaler, config, step: int, elapsed: float) -> None:
    state = {
        "step": step,
        "elapsed_s": elapsed,
        "config": config.to_dict(),
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
    }
    _write_atomic(run_dir / STATE_FILE, state)


def _write_atomic(path: Path, state: dict) -> None:
    """Write a temp file, fsync, rename: a crash leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_atomic(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise TrainingError(f"--resume: {path} is missing or unreadable ({err}); start again without --resume") from err


def _load_state(run_dir: Path, module, optimizer, scheduler, scaler, config: TrainConfig) -> tuple[int, float]:
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise TrainingError(f"--resume: no {STATE_FILE} in {run_dir}; start without --resume")
    state = _read_atomic(path)
    saved = TrainConfig.from_dict(state["config"])
    if saved != config:
        changed = sorted(k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v)
        raise TrainingError(f"--resume: the run in {run_dir} used different settings ({', '.join(changed)}); "
                            "resume with the same options or pick another --out")
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return state["step"], state["elapsed_s"]


def read_state_model(run_dir) -> dict:
    """The model weights of the latest trainer checkpoint (for exporting an unfinished run)."""
    return torch.load(Path(run_dir) / STATE_FILE, map_location="cpu", weights_only=True)["model"]


# ---- metrics -------------------------------------------------------------------------------------


class MetricsLog:
    """metrics.csv, one row per step; on resume rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, keep_through: int):
        self.path = path
        self.rows: list[dict] = []
        if keep_through and path.is_file():
            with open(path, newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= keep_through]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rewrite()

    def append(self, row: dict) -> None:
        if self.rows and list(row) != list(self.rows[0]):
            self.rows.append(row)
            self._rewrite()
            return
        new_file = not self.rows
        self.rows.append(row)
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as handle:
            if self.rows:
                writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]), extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self.rows)


def plot_losses(metrics_csv: Path, png: Path) -> None:
    """One curve per logged loss over steps, log scale (losses span orders of magnitude)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    skip = {"step", "lr", "grad_norm", "samples_per_s", "skipped", "elapsed_s"}
    names = [n for n in rows[0] if n not in skip]
    steps = [int(r["step"]) for r in rows]
    figure, axis = plt.subplots(figsize=(7, 4))
    for name in names:
        axis.plot(steps, [max(float(r[name]), 1e-12) for r in rows], label=name)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (unweighted parts)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
