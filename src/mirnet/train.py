"""Training MIRNet on paired images (LOL or your own), with exact resume and optional DDP.

A run folder holds: config.json (the TrainConfig and the machine), metrics.jsonl and metrics.csv
(one row per epoch), last.pt (full training state, for --resume), best.safetensors (weights of the
best validation PSNR), loss.png and psnr.png. Every file is written atomically.

With `ema` set, an exponential moving average of the weights is what is validated and saved: LOL's
validation PSNR swings by tenths of a dB from epoch to epoch with the global exposure the model
settles on, and the average of the last thousand or so steps swings less than any one of them
(it smoothed lol-compact's second stage but, lagging, ended 0.1 dB lower; in its first stage it
gave better weights, which the second stage did not keep ahead: README, Trained models).

Multi-process: launch with torchrun; each process draws its own crops (per-process batch size),
gradients are averaged by DistributedDataParallel, validation is sharded across processes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import preset
from .data import (CropSampler, DataError, Pair, cut_short, data_id, load_pairs, smaller_than, split_by_scene,
                   to_tensor, to_uint8)
from .errors import first_line
from .files import atomic_output, output_folder, same_path
from .metrics import psnr, ssim, ssim_map
from .model import MIRNet, count_parameters, untie_weights
from .runtime import Runtime, select_runtime
# latest_weights is imported from here by scripts.
from .weights import WeightsError, latest_weights, read_metadata, read_torch_checkpoint, save_weights  # noqa: F401


# The named choices of a run, checked when its configuration is made rather than after its data is read.
SPLITS = ("seeds", "full")
SCHEDULES = ("plateau", "cosine")


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as config.json in the run folder."""

    data: str  # paired folder (ROOT/low, ROOT/high) to train on
    out: str  # run folder
    preset: str = "paper"
    model_overrides: dict = field(default_factory=dict)  # MIRNetConfig fields, e.g. {"channels": 16}
    init: str | None = None  # start from these weights (a model name or a .safetensors file), e.g. a stage 2
    split: str = "seeds"  # "seeds": hold out `val_pairs` of data by scene; "full": train on all of data
    val_pairs: int = 185
    val_data: str | None = None  # a separate paired folder to validate on (never eval15 by default)
    val_limit: int | None = None  # validate on the first N validation pairs only
    crop: int = 128
    batch_size: int = 4  # per process
    augment: bool = False  # the 8 flips/rotations of each crop
    exposure_jitter: float = 1.0  # multiply each low crop by a gain in [1/S, S], log-uniform (1: off)
    mixup: float = 0.0  # share of batches whose pairs are blended with pairs of the batch (0: off)
    epochs: int | None = 50  # None with train_time, which sets the run's length instead
    steps_per_epoch: int | None = None  # default: training pairs // (batch size x processes)
    max_steps: int | None = None  # stop (resumably) after this many optimizer steps in all
    # The run's length in seconds of training (from its first step, each epoch's validation included,
    # across resumes) instead of epochs: it ends when they are spent, the cosine schedule (if chosen)
    # anneals over them, and epochs only set how often it validates. The same recipe then fits one
    # budget on CPUs that differ 2-3x in speed (README, Training).
    train_time: float | None = None
    time_budget: float | None = None  # stop (resumably) after this many seconds of this invocation
    lr: float = 1e-4
    schedule: str = "plateau"  # "plateau": x0.5 when val PSNR stalls (the seeds); "cosine": warm-up + cosine
    warmup_steps: int = 0
    min_lr: float = 1e-6
    loss: str = "charbonnier"  # "charbonnier" (the paper's) or "psnr" (minus each crop's PSNR in dB)
    ssim_weight: float = 0.0  # loss = LOSS + ssim_weight * (1 - SSIM); 0 is the paper's loss
    ema: float = 0.0  # decay of a moving average of the weights, validated and saved instead (0: off)
    patience: int = 5  # epochs without a better val PSNR before the plateau schedule halves the rate
    seed: int = 0
    split_seed: int | None = None  # seed of the seeds split (None: `seed`); fixed, runs of new seeds share held-out pairs
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    checkpoint_every: float = 300.0  # seconds between mid-epoch checkpoints
    progress: bool = True

    def __post_init__(self):
        for name, allowed in (("split", SPLITS), ("schedule", SCHEDULES), ("loss", tuple(LOSSES))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; use {' or '.join(allowed)}")
        for name in ("crop", "batch_size", "epochs", "steps_per_epoch", "max_steps", "val_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time-budget must be a positive number of seconds, got {self.time_budget}")
        if not self.lr >= 0:
            raise ValueError(f"lr must not be negative, got {self.lr}")
        if self.ssim_weight > 0 and self.crop < 11:  # else the first step fails inside the convolution
            raise ValueError(f"crop must be at least 11 pixels with ssim-weight (SSIM's 11x11 window), got {self.crop}")
        if self.train_time is not None:
            if not self.train_time > 0:
                raise ValueError(f"train-time must be a positive number of seconds, got {self.train_time}")
            self.epochs = None  # the time sets the run's length; epochs, if given, would be ignored
        elif self.epochs is None:
            raise ValueError("a run needs a length: epochs or train_time")

    def check_new_run(self) -> None:
        """Refuse values a new run cannot train with. Checked for new runs only: a run recorded by an
        older version that accepted such a value (e.g. a negative warm-up, taken as none) resumes."""
        # A NaN passes every comparison but the one it is written to fail: each check is written so.
        if not self.lr < math.inf:
            raise ValueError(f"lr must be a finite number, got {self.lr}")
        if not 0 <= self.min_lr < math.inf:
            raise ValueError(f"min-lr must be a finite number, not negative, got {self.min_lr}")
        if not 0 <= self.ssim_weight < math.inf:
            raise ValueError(f"ssim-weight must be a finite number, not negative, got {self.ssim_weight}")
        for name in ("warmup_steps", "patience", "seed", "split_seed"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if not 1 <= self.exposure_jitter < math.inf:
            raise ValueError(f"exposure-jitter must be a finite number, at least 1 (1: off), "
                             f"got {self.exposure_jitter}")  # fmt: skip
        if not self.checkpoint_every >= 0:  # 0: after every step; infinity: at the ends of epochs only
            raise ValueError(f"checkpoint-every must be a number of seconds, not negative, "
                             f"got {self.checkpoint_every}")  # fmt: skip

    @property
    def held_out(self) -> dict:
        """Which pairs of `data` the run holds out from training, as its weights record it."""
        split_seed = self.seed if self.split_seed is None else self.split_seed
        return {"data": self.data, "split": self.split, "val_pairs": self.val_pairs, "split_seed": split_seed,
                "val_data": self.val_data}  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())["train"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a run's config.json ({type(error).__name__}: {error})") from None
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown training options {', '.join(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:  # e.g. a hand-edited "crop": "x"
            raise ValueError(f"{path}: not a run's config.json ({type(error).__name__}: {error})") from None


# What a resumed run may change: its budget (for that invocation, as before; epochs only where no
# cosine anneals over them, _check_same_schedule), and how it runs (the same steps on other hardware
# or with other rounding, kept for later resumes). Each resume is recorded in the run's config.json
# under "resumes", with its hardware and what changed.
BUDGET = ("epochs", "max_steps", "time_budget")
EXECUTION = ("device", "precision", "compile", "checkpoint_every")
RESUMABLE_CHANGES = BUDGET + EXECUTION
# Also given anew on resume: where the run and its data are now (the data's pairs are checked against
# the record), and whether a progress bar is drawn.
RELOCATABLE = ("out", "data", "val_data", "progress")


def charbonnier(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss, mean of sqrt((x - y)^2 + eps^2): a differentiable L1."""
    return torch.sqrt((output - target) ** 2 + eps**2).mean()


def psnr_loss(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Minus the PSNR in dB (peak 1) of each image of a (B, 3, H, W) batch, averaged over the batch.

    The metric itself, per crop as the metric is per image: an error costs in proportion to the
    crop's whole error (log of the MSE), not pixel by pixel as in Charbonnier's L1."""
    mse = ((output - target) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(mse + eps)).mean()


LOSSES = {"charbonnier": charbonnier, "psnr": psnr_loss}


def ssim_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM of (B, 3, H, W) images in [0, 1], per channel as the metric (11x11 Gaussian window)."""
    flat = (-1, 1, *output.shape[-2:])
    return 1 - ssim_map(output.reshape(flat), target.reshape(flat), 1.0).mean()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, low, high, runtime: Runtime,
               ssim_weight: float = 0.0, loss_name: str = "charbonnier") -> float:  # fmt: skip
    """One optimizer step on a batch; the loss is on the output clamped to [0, 1], as the official code."""
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        output = model(runtime.input(low))
    output, target = output.float().clamp(0, 1), runtime.input(high)
    loss = LOSSES[loss_name](output, target)
    if ssim_weight:
        loss = loss + ssim_weight * ssim_loss(output, target.float())
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def validate(model: nn.Module, pairs: list[Pair], runtime: Runtime) -> dict[str, float]:
    """Mean Charbonnier loss, PSNR and SSIM (8-bit, the field's conventions) over full validation
    images, sharded under DDP."""
    model.eval()
    rank, world = _rank_world()
    sums = torch.zeros(4, dtype=torch.float64)
    for pair in pairs[rank::world]:
        low, high = to_tensor(pair.low)[None], to_tensor(pair.high)[None]
        with runtime.autocast():
            output = model(runtime.input(low)).float().clamp(0, 1).cpu()
        image = to_uint8(output[0])
        scores = [charbonnier(output, high).item(), psnr(image, pair.high), ssim(image, pair.high), 1.0]
        sums += torch.tensor(scores, dtype=torch.float64)
    if world > 1:
        dist.all_reduce(sums)
    model.train()
    loss, total_psnr, total_ssim, count = sums.tolist()
    count = max(count, 1)
    return {"val_loss": loss / count, "val_psnr": total_psnr / count, "val_ssim": total_ssim / count}


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed(device: str) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")


class TrainingClock:
    """Seconds a run has trained, across its resumes: what its records' time and --train-time count."""

    def __init__(self, before: float = 0.0):
        self.before, self.started = before, time.time()
        self.agreed = before  # the time as all processes last agreed on it: what the schedule reads

    def __call__(self) -> float:
        return self.before + time.time() - self.started

    def agree(self, world: int) -> float:
        """The latest of the processes' clocks, on every process: under DDP each starts its clock on its
        own, and a schedule read from each one's clock would give each its own learning rate."""
        spent = torch.tensor([self()], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(spent, op=dist.ReduceOp.MAX)
        self.agreed = spent.item()
        return self.agreed


def _make_scheduler(cfg: TrainConfig, optimizer, total_steps: int | None, clock: TrainingClock):
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=cfg.patience, min_lr=cfg.min_lr
        )
    if cfg.schedule == "cosine":
        warmup = max(cfg.warmup_steps, 0)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if cfg.train_time:  # keyed to the time spent (the warm-up's share of it is left in: a few %)
                progress = min(clock.agreed / cfg.train_time, 1.0)
            else:
                progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
            floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0  # lr 0 (weights kept) anneals nothing
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise AssertionError(cfg.schedule)  # TrainConfig allows only SCHEDULES


def datasets(cfg: TrainConfig) -> tuple[list[Pair], list[Pair]]:
    """The (training, validation) pairs of a run, as its configuration splits them."""
    pairs = load_pairs(cfg.data)
    if cfg.val_data:  # validation comes from elsewhere: every pair of cfg.data trains
        train_pairs, val_pairs = pairs, load_pairs(cfg.val_data)
    elif cfg.split == "seeds":
        try:
            train_pairs, val_pairs = split_by_scene(pairs, cfg.val_pairs, seed=cfg.held_out["split_seed"])
        except ValueError as error:
            raise DataError(f"{cfg.data}: {error}; use --val-pairs, --split full or --val-data") from None
    elif cfg.split == "full":
        train_pairs, val_pairs = pairs, []
    else:
        raise AssertionError(cfg.split)  # TrainConfig allows only SPLITS
    if not train_pairs:
        raise DataError(f"{cfg.data}: no pairs left to train on after holding out {len(val_pairs)} (whole "
                        "scenes go to validation); use a smaller --val-pairs")  # fmt: skip
    if cfg.val_limit is not None:
        val_pairs = val_pairs[: cfg.val_limit]
    # Said before any step, not after the first epoch (and again at every resume).
    if small := smaller_than(train_pairs, cfg.crop, f"the {cfg.crop}px crop; use a smaller --crop"):
        raise DataError(f"{cfg.data}: {small}")
    if small := smaller_than(val_pairs, 11, "SSIM's 11x11 window, which validation scores"):
        raise DataError(f"{cfg.val_data or cfg.data}: validation {small}")
    return train_pairs, val_pairs


class Run:
    """The files of a run folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.config = self.folder / "config.json"
        self.last = self.folder / "last.pt"
        self.best = self.folder / "best.safetensors"
        self.jsonl = self.folder / "metrics.jsonl"
        self.csv = self.folder / "metrics.csv"

    def history(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def write_history(self, rows: list[dict]) -> None:
        with atomic_output(self.jsonl) as tmp:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
        if rows:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[-1]))
            writer.writeheader()
            writer.writerows(rows)
            with atomic_output(self.csv) as tmp:
                tmp.write_text(buffer.getvalue())


def describe_loss(loss: str, ssim_weight: float) -> str:
    """The training loss in words, for plots and cards: e.g. "Charbonnier + 0.5 x (1 - SSIM)"."""
    name = {"charbonnier": "Charbonnier", "psnr": "minus the PSNR (dB) of each crop"}.get(loss, loss)
    return f"{name} + {ssim_weight:g} x (1 - SSIM)" if ssim_weight else name


def plot_history(rows: list[dict], folder: Path, train_loss: str = "Charbonnier") -> None:
    """loss.png and psnr.png against epochs (train and validation), like the seeds' report.
    train_loss names the training objective; validation always scores the Charbonnier loss, so
    the two curves share an axis only when the objective is Charbonnier alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    for name, series, ylabel in [
        ("loss", [("train_loss", f"train: {train_loss}"), ("val_loss", "validation: Charbonnier")], "loss"),
        ("psnr", [("val_psnr", "validation")], "PSNR (dB, 8-bit, peak 255)"),
    ]:
        series = [(key, label) for key, label in series if any(r.get(key) is not None for r in rows)]
        if not series:  # e.g. no validation pairs: no PSNR to plot
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for key, label in series:
            values = [np.nan if r.get(key) is None else r[key] for r in rows]
            ax.plot(epochs, values, marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_output(folder / f"{name}.png") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or resume) the run described by cfg; returns the last row of metrics, with `last_step`,
    the step of its last checkpoint."""
    if not resume:
        cfg.check_new_run()
    _init_distributed(cfg.device)
    rank, world = _rank_world()
    run = Run(cfg.out)
    if not resume:
        # Also a finished run whose last.pt was deleted to save space: its weights and record stay.
        held = [p.name for p in (run.last, run.config, run.best, run.folder / "metrics.jsonl") if p.exists()]
        if held:
            raise ValueError(f"{run.folder}: already holds a run ({', '.join(held)}); "
                             "use --resume or another --out")  # fmt: skip
    if resume:
        for needed in (run.last, run.config):
            if not needed.exists():
                raise ValueError(f"{run.folder}: nothing to resume (no {needed.name})")
        _check_same_options(TrainConfig.load(run.config), run, cfg)
    if not resume:  # on every process, so that all stop alike (exist_ok: they may race)
        output_folder(run.folder)  # before the data is read and the model built
    runtime = select_runtime(cfg.device, cfg.precision, cfg.channels_last)
    if runtime.precision == "fp16":  # bf16 keeps fp32's range; fp16 would need a GradScaler
        raise ValueError("--precision fp16: its gradients would underflow without loss scaling, which mirnet "
                         "train does not do; use bf16 (GPUs since Ampere) or fp32")  # fmt: skip
    if runtime.device.type == "cuda" and world > 1:
        runtime = dataclasses.replace(runtime, device=torch.device("cuda", torch.cuda.current_device()))
    train_pairs, val_pairs = datasets(cfg)
    if rank == 0 and (note := cut_short(train_pairs + val_pairs)):
        print(f"note: {note}", file=sys.stderr)
    fingerprint = data_id(cfg.data)
    val_fingerprint = data_id(cfg.val_data) if cfg.val_data else None
    if not resume and val_fingerprint == fingerprint:  # the same pairs by another path: they all train
        raise DataError(f"{cfg.val_data}: the same pairs as --data {cfg.data}, which all train; validate "
                        "on other pairs, or leave out --val-data to hold out some (--split seeds)")  # fmt: skip
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = MIRNet(preset(cfg.preset, **cfg.model_overrides))
    init_record: dict = {}  # how the weights it started from were trained, kept in its own weights' record
    if cfg.init and not resume:
        model.load_state_dict(_initial_weights(cfg).state_dict())
        init_record = training_record(cfg.init)
        _check_init_never_saw(cfg, init_record)
    model = runtime.prepare(model)
    sampler = CropSampler(train_pairs, cfg.crop, cfg.batch_size, cfg.augment, seed=cfg.seed + 1_000_003 * rank,
                          exposure_jitter=cfg.exposure_jitter, mixup=cfg.mixup)  # fmt: skip
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(train_pairs) // (cfg.batch_size * world))
    total_steps = None if cfg.train_time else steps_per_epoch * (cfg.epochs or 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ema = _make_ema(model, cfg.ema)
    evaluated = ema.module if ema is not None else model  # the weights that are validated and saved
    clock = TrainingClock()
    scheduler = _make_scheduler(cfg, optimizer, total_steps, clock)
    step, best_psnr = 0, -math.inf
    epoch_losses: list[float] = []  # this epoch's losses so far (checkpointed: metrics resume exactly too)

    if resume:
        record = json.loads(run.config.read_text())
        _check_same_run(record, run, train_pairs, val_pairs, world)
        for folder, key, now in ((cfg.data, "data_id", fingerprint), (cfg.val_data, "val_data_id", val_fingerprint)):
            if record.get(key, now) != now:
                raise DataError(f"{folder}: not the data the run in {run.folder} was started on (the same pair "
                                f"names, but other file sizes); resume with the data it was started on")  # fmt: skip
        _check_same_schedule(record, run, cfg)
        try:
            state = read_torch_checkpoint(run.last)
        except WeightsError as error:
            raise ValueError(f"{run.last}: cannot resume from this checkpoint: "
                             f"{str(error).removeprefix(f'{run.last}: ')}") from None  # fmt: skip
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            scheduler.load_state_dict(state["scheduler"])
            sampler.load_state_dict(state["samplers"][rank])
            torch.set_rng_state(state["torch_rng"])
            step, best_psnr, clock.before = state["step"], state["best_psnr"], state["elapsed"]
            # Checkpoints before 2026-12-04 kept rank 0's losses alone.
            epoch_losses = state.get("epoch_losses_per_process", {rank: state["epoch_losses"]})[rank]
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:  # a foreign or edited file
            raise ValueError(f"{run.last}: cannot resume from this checkpoint ({type(error).__name__}: "
                             f"{first_line(error)})") from None  # fmt: skip
        clock.agreed = clock.before
        init_record = record.get("init_training") or {}
        if rank == 0:
            _record_resume(record, run, cfg, step, runtime)
    elif rank == 0:
        record = {"train": dataclasses.asdict(cfg), "model": model.config.to_dict(),
                  "parameters": count_parameters(model), "runtime": runtime.describe(), "world_size": world,
                  "train_pairs": [p.stem for p in train_pairs], "val_pairs": [p.stem for p in val_pairs],
                  "data_id": fingerprint, "val_data_id": val_fingerprint, "paths": _resolved_paths(cfg),
                  "init_training": init_record}  # fmt: skip
        with atomic_output(run.config) as tmp:
            tmp.write_text(json.dumps(record, indent=2))

    trained = model
    if cfg.compile:
        trained = torch.compile(trained)
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(trained)
    history = run.history() if rank == 0 else []
    history = [row for row in history if row["step"] <= step]  # rows after the checkpoint are redone
    saved_step = step  # the step last.pt holds

    def diverged(what: str) -> ValueError:
        # Raised before anything of this step is saved: last.pt and best.safetensors keep what they held.
        return ValueError(f"{run.folder}: {what} at step {step}; the run stopped, its checkpoint stays at step "
                          f"{saved_step} (resuming repeats these steps; try a new run with a lower --lr)")  # fmt: skip

    def check_weights() -> None:
        # The same weights on every process (DDP), so every process decides alike without a collective.
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise diverged("the weights hold non-finite values")

    def checkpoint() -> None:
        nonlocal saved_step
        check_weights()
        # Each process's crop sampler and losses of the epoch so far (the epoch's loss is their mean).
        samplers, losses = [sampler.state_dict()], [epoch_losses]
        if world > 1:
            samplers, losses = [None] * world, [None] * world
            dist.all_gather_object(samplers, sampler.state_dict())
            dist.all_gather_object(losses, epoch_losses)
        if rank == 0:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "samplers": samplers, "torch_rng": torch.get_rng_state(),
                     "step": step, "best_psnr": best_psnr, "elapsed": clock(),
                     "epoch_losses": epoch_losses, "epoch_losses_per_process": losses}  # fmt: skip
            if ema is not None:
                state["ema"] = ema.state_dict()
            with atomic_output(run.last) as tmp:
                torch.save(state, tmp)
        saved_step = step

    started = clock.started = time.time()
    if not resume:  # step 0: a run stopped before its first timed checkpoint still resumes
        checkpoint()
    last_checkpoint = started
    progress = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm

        progress = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True,
                        mininterval=1.0 if sys.stderr.isatty() else 30.0)  # fmt: skip
    row: dict = history[-1] if history else {}
    epoch_started, epoch_steps = time.time(), 0  # for steps/s: this invocation's steps of the epoch

    def finished() -> bool:
        if cfg.train_time:
            return clock.agreed >= cfg.train_time
        return step >= total_steps

    def end_epoch() -> None:
        nonlocal row, best_psnr, last_checkpoint, epoch_losses, epoch_started, epoch_steps
        check_weights()  # before validation, which would score them, and before best.safetensors
        now = time.time()
        # The bare model: DDP's forward would sync buffers, a collective that uneven shards would hang.
        metrics = validate(evaluated, val_pairs, runtime) if val_pairs else {}
        if cfg.schedule == "plateau" and metrics:
            scheduler.step(metrics["val_psnr"])
        train_loss = None
        if epoch_losses:  # every process's crops, not rank 0's alone (each holds as many losses)
            total = torch.tensor([sum(epoch_losses), len(epoch_losses)], dtype=torch.float64)
            if world > 1:
                dist.all_reduce(total)
            train_loss = (total[0] / total[1]).item()
        row = {"epoch": math.ceil(step / steps_per_epoch), "step": step, "train_loss": train_loss,
               "val_loss": metrics.get("val_loss"), "val_psnr": metrics.get("val_psnr"),
               "val_ssim": metrics.get("val_ssim"), "lr": optimizer.param_groups[0]["lr"],
               "time": round(clock.before + now - clock.started, 1),
               "steps_per_s": round(epoch_steps / max(now - epoch_started, 1e-9), 4) if epoch_steps else None}  # fmt: skip
        improved = metrics and metrics["val_psnr"] > best_psnr
        if improved:
            best_psnr = metrics["val_psnr"]
        if rank == 0:
            # A row of this step already there was written by a run killed before its checkpoint.
            history[:] = [r for r in history if r["step"] != step] + [row]
            if improved or (not val_pairs):
                metadata = _weights_metadata(cfg, row, runtime, fingerprint, init_record)
                save_weights(evaluated, run.best, metadata=metadata)
            run.write_history(history)
            plot_history(history, run.folder, describe_loss(cfg.loss, cfg.ssim_weight))
            if progress is not None:
                progress.write(_format_row(row))
        # Emptied before the checkpoint: a run resumed from it starts the next epoch's mean afresh.
        epoch_losses, epoch_steps = [], 0
        if cfg.train_time:  # the validation counts: a time that ran out during it ends the run here
            clock.agree(world)
        checkpoint()
        last_checkpoint = epoch_started = time.time()

    # A max_steps already reached (it is recorded, so a resume meets it again) takes no further step.
    stop = cfg.max_steps is not None and step >= cfg.max_steps
    if cfg.train_time:
        clock.agree(world)
    ended = finished()
    if resume and rank == 0 and (stop or ended):  # said, so that a resume that trains nothing is not silent
        if not ended:
            length = "its --max-steps"
        else:
            length = f"its --train-time {cfg.train_time:g} s" if cfg.train_time else f"its {cfg.epochs} epochs"
        message = f"{run.folder}: nothing to train: the run is at step {step}, the end of {length}"
        if progress is not None:  # on a line of its own, not inside the bar's
            progress.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)
    while not stop and not finished():
        loss = train_step(trained, optimizer, *sampler.batch(), runtime, cfg.ssim_weight, cfg.loss)
        step += 1
        if _agree(not math.isfinite(loss), world):  # any process's: the averaged gradients carry it to all
            raise diverged(f"the training loss is {loss}" if not math.isfinite(loss) else
                           "the training loss of another process is not finite")  # fmt: skip
        if ema is not None:
            ema.update_parameters(model)
        epoch_losses.append(loss)
        epoch_steps += 1
        if cfg.train_time:  # once a step, on every process: the schedule and the end read this time
            clock.agree(world)
        if cfg.schedule == "cosine":
            scheduler.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
        out_of_time = cfg.time_budget is not None and time.time() - started >= cfg.time_budget
        out_of_steps = cfg.max_steps is not None and step >= cfg.max_steps
        stop = _agree(out_of_time or out_of_steps, world)
        if step % steps_per_epoch == 0:
            end_epoch()
        elif stop or _agree(time.time() - last_checkpoint >= cfg.checkpoint_every, world):
            checkpoint()
            last_checkpoint = time.time()
    if not stop and cfg.train_time and epoch_losses:
        # The time ran out inside an epoch (its steps are still in epoch_losses, on every process, also
        # when resumed): that partial epoch is validated and recorded as the run's last.
        end_epoch()
    if progress is not None:
        progress.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    # The last validated row, and the step the run stopped at (its last.pt), which a stop inside an
    # epoch puts after that row's.
    return {**row, "last_step": step} if rank == 0 else {}


def _resolved_paths(cfg: TrainConfig) -> dict:
    """The run's data folders as absolute paths: config.json keeps them as typed (relative to where the
    run was started), and a resume from elsewhere finds them by these."""
    return {name: str(Path(value).resolve()) for name in ("data", "val_data") if (value := getattr(cfg, name))}


def _check_same_options(recorded: TrainConfig, run: Run, cfg: TrainConfig) -> None:
    """Refuse a resume whose options would make it another run than the one recorded: only its budget,
    how it runs and where things are may change (`mirnet train --resume` says so first, by flag)."""
    differ = [f"{k}: recorded {v!r}, given {getattr(cfg, k)!r}" for k, v in dataclasses.asdict(recorded).items()
              if k not in (*RESUMABLE_CHANGES, *RELOCATABLE) and getattr(cfg, k) != v
              and not (k == "init" and v and getattr(cfg, k) and same_path(v, getattr(cfg, k)))]  # fmt: skip
    if differ:
        raise ValueError(f"{run.config}: a resume continues the run as recorded; only "
                         f"{', '.join(RESUMABLE_CHANGES)} can change ({'; '.join(differ)})")  # fmt: skip


def _check_same_run(record: dict, run: Run, train_pairs: list[Pair], val_pairs: list[Pair], world: int) -> None:
    """Refuse a resume that would silently become another run (`record`: its config.json): its pairs, or
    its processes, changed."""
    # Each process's crop sampler is checkpointed, and an epoch's steps are divided among them.
    started = record.get("world_size", 1)
    if started != world:
        raise ValueError(f"{run.config}: the run was started with {started} process(es); resume it with as "
                         f"many, not {world}")  # fmt: skip
    for name, pairs in (("train_pairs", train_pairs), ("val_pairs", val_pairs)):
        recorded, now = record.get(name), [p.stem for p in pairs]
        if recorded is not None and recorded != now:
            parts = []
            if gone := sorted(set(recorded) - set(now)):
                parts.append("missing " + ", ".join(gone[:3]))
            if new := sorted(set(now) - set(recorded)):
                parts.append("new " + ", ".join(new[:3]))
            detail = "; ".join(parts) or "in another order"
            raise DataError(f"{run.config}: the data's {name.replace('_', ' ')} are not the ones the run "
                            f"recorded ({detail}); resume with the data it was started on")  # fmt: skip


def _check_same_schedule(record: dict, run: Run, cfg: TrainConfig) -> None:
    """Refuse another --epochs for a run whose cosine anneals over its epochs: its learning rate would
    jump from the step it resumes at (a plateau schedule, or a cosine keyed to time, has no such length)."""
    started = record["train"].get("epochs")
    if cfg.schedule == "cosine" and not cfg.train_time and cfg.epochs != started:
        raise ValueError(f"--epochs: the run in {run.folder} anneals its cosine schedule over {started} epochs; "
                         f"{cfg.epochs} would change its learning rate from where it stopped (--max-steps stops "
                         f"it earlier; to train on, start a new run with --init {run.last})")  # fmt: skip


def _record_resume(record: dict, run: Run, cfg: TrainConfig, step: int, runtime: Runtime) -> None:
    """Note in config.json (`record`, as read) where the run resumed, on what, and what changed; later
    resumes keep the changes to how it runs."""
    before, now = record["train"], dataclasses.asdict(cfg)
    # Fields newer than the record are not changes (they hold their defaults, as load() filled them).
    changed = {k: [before[k], v] for k, v in now.items() if k != "out" and before.get(k, v) != v}
    record["train"] = {**before, **{k: now[k] for k in EXECUTION}}
    record["paths"] = _resolved_paths(cfg)  # where the data was found this time, for the next resume
    record.setdefault("resumes", []).append({"step": step, "changed": changed, "runtime": runtime.describe()})
    with atomic_output(run.config) as tmp:
        tmp.write_text(json.dumps(record, indent=2))


def _make_ema(model: MIRNet, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of model's weights (None when decay is 0)."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"ema decay must be in (0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _initial_weights(cfg: TrainConfig) -> MIRNet:
    """The model named by cfg.init, checked to have the configuration this run trains."""
    from .zoo import load_model

    init = Path(cfg.init)
    # A run's last.pt (load_model reads it) is where that run ended, not its best validated epoch,
    # e.g. to fine-tune after a first stage that had no validation pairs to choose an epoch with.
    start = load_model(init)
    wanted = preset(cfg.preset, **cfg.model_overrides)
    if start.config.share_weights and start.config.replace(share_weights=False) == wanted:
        # Fine-tuning shared weights as an unshared model: each use starts from the shared value.
        return untie_weights(start)
    if start.config != wanted:
        raise ValueError(
            f"{cfg.init}: its model ({start.config}) is not the run's ({wanted}); pick the matching --preset"
        )
    return start


def _agree(flag: bool, world: int) -> bool:
    """True on every process if it is true on any (so that all stop or checkpoint together)."""
    if world == 1:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def _weights_metadata(cfg: TrainConfig, row: dict, runtime: Runtime, fingerprint: str, init: dict) -> dict:
    # The split is recorded in full so that a comparison can tell which pairs the weights never saw,
    # and the data's fingerprint (data_id) with it: the path was typed relative to somewhere. So is the
    # record of the weights the run started from, which saw pairs of their own.
    return {"training": {**cfg.held_out, "data_id": fingerprint, "preset": cfg.preset, "epoch": row["epoch"],
            "step": row["step"], "val_psnr": row["val_psnr"], "time_s": row["time"], **runtime.describe(),
            **({"init": init} if init else {})}}  # fmt: skip


def _check_init_never_saw(cfg: TrainConfig, init_record: dict) -> None:
    """Refuse a start from weights that may have trained on the pairs this run validates on: its
    validation would pick epochs, and report scores, on pairs the model has seen."""
    if cfg.val_data:
        reason = trained_on_held_out(init_record, cfg.val_data, None)
    elif cfg.split == "seeds":
        reason = trained_on_held_out(init_record, cfg.data, cfg.val_pairs, cfg.held_out["split_seed"])
    else:
        return  # no validation pairs
    if reason:
        raise ValueError(f"{cfg.init}: may have trained on the pairs this run validates on ({reason}); "
                         "start from weights that held them out, or validate on other pairs (--val-data)")


def trained_on_held_out(training: dict, data: str | Path, val_pairs: int | None,
                        split_seed: int = 0) -> str | None:  # fmt: skip
    """Why a model whose training record is `training` may have trained on some of the pairs that the
    seeds split of `data` holds out with (val_pairs, split_seed), or on any pair of `data` when
    val_pairs is None (a --val-data folder, scored whole); None if it cannot have (as far as its record
    tells: records from before 2026-12-01 do not say how many pairs their split held out, nor records
    from before 2026-12-05 which weights a run started from)."""
    reason = _trained_on(training, data, val_pairs, split_seed)
    if reason is None and training.get("init"):  # fine-tuned weights hold what their start learned
        inner = trained_on_held_out(training["init"], data, val_pairs, split_seed)
        reason = inner and f"the weights it started from (--init): {inner}"
    return reason


def _trained_on(training: dict, data: str | Path, val_pairs: int | None, split_seed: int) -> str | None:
    if not training.get("data"):
        return None
    if Path(training["data"]).resolve() != Path(data).resolve():
        # Another path, relative to another folder or a copy, may still hold the same pairs.
        try:
            same = training.get("data_id") is not None and training["data_id"] == data_id(data)
        except (DataError, OSError):
            same = False
        if not same:
            return None  # trained on other data
    if training.get("val_data"):
        return f"it trained on every pair of {training['data']} (validating on {training['val_data']})"
    if training.get("split") == "full":
        return f"it trained on every pair of {training['data']} (--split full)"
    if val_pairs is None:
        return f"it trained on the pairs of {training['data']} that its split did not hold out"
    held, seed = training.get("val_pairs"), training.get("split_seed")
    if held is not None and seed is not None and (held < val_pairs or seed != split_seed):
        # The split holds out whole scenes in an order fixed by its seed: more pairs of the same
        # order include these, fewer or another order do not.
        return f"its split held out {held} pairs with seed {seed}, not all of these {val_pairs} with seed {split_seed}"
    return None


def training_record(name_or_path: str | Path) -> dict:
    """How a model was trained, as its weights file or its run's config.json records it (for
    trained_on_held_out); {} where nothing is recorded (official checkpoints)."""
    from .zoo import is_run_checkpoint, model_file

    path = model_file(str(name_or_path))
    if path.suffix.lower() == ".pt" and is_run_checkpoint(path):  # as load_model tells a run's last.pt
        config = path.parent / "config.json"
        record = json.loads(config.read_text())
        return {**TrainConfig.load(config).held_out, "data_id": record.get("data_id"),
                "init": record.get("init_training") or {}}  # fmt: skip
    if path.suffix.lower() == ".safetensors":
        return read_metadata(path).get("training", {})
    return {}


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']}", f"step {row['step']}"]
    formats = {"train_loss": ".4f", "val_loss": ".4f", "val_psnr": ".2f", "val_ssim": ".4f", "lr": ".2e"}
    for key, fmt in formats.items():
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:{fmt}}")
    if row.get("steps_per_s") is not None:
        parts.append(f"{row['steps_per_s']:.2f} steps/s")
    return " | ".join(parts)


__all__ = ["DataError", "TrainConfig", "charbonnier", "datasets", "describe_loss", "plot_history", "psnr_loss", "ssim_loss",
           "train", "train_step", "trained_on_held_out", "training_record", "validate"]  # fmt: skip
