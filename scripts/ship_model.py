"""Ship a training run as a bundled model: score its best checkpoint on eval15 (once), write the
package's weights file with its record, and the model card with its tables and figure.

    .venv/bin/python scripts/ship_model.py runs/lol-compact --name lol-compact \
        --eval ../shared/data/LOL/eval15 --command "./run.sh train ..."

A run of several stages (each started from the previous one's best weights with --init) is given as
its stage folders in order; the last stage's best checkpoint is shipped (its last, for a run with
no validation pairs: --split full), and the card records every stage and their summed wall time.

Writes src/mirnet/pretrained/NAME.safetensors (fp32) and docs/models/NAME.md with
docs/models/NAME/{evaluation.csv,json,md,comparison.png,psnr.png,metrics-stageN.csv} (loss.png in
place of psnr.png for a run without validation). The card is written anew, except its
"## Earlier versions" section, which is carried over: write the replaced model's entry there
before shipping its successor.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from mirnet import count_macs, count_parameters, load_weights, save_weights
from mirnet.data import find_pairs, load_pairs
from mirnet.evaluate import CONVENTIONS, comparison_figure, evaluate, model_method
from mirnet.files import atomic_output
from mirnet.runtime import select_runtime
from mirnet.train import describe_loss, plot_history
from mirnet.weights import read_metadata

ROOT = Path(__file__).resolve().parent.parent
HISTORY = "## Earlier versions"


def earlier_versions(card: str) -> str:
    """The card's "Earlier versions" section, from its heading to the next heading of its level."""
    start = card.find(f"\n{HISTORY}\n")
    if start < 0:
        return ""
    end = card.find("\n## ", start + len(HISTORY) + 2)
    return card[start + 1 : end + 1 if end >= 0 else len(card)].rstrip() + "\n"


@dataclass
class Stage:
    """One training run folder: its recorded configuration, per-epoch history and best row."""

    folder: Path
    config: dict
    history: list[dict]

    @classmethod
    def read(cls, folder: Path) -> Stage:
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
        return cls(folder, json.loads((folder / "config.json").read_text()), history)

    @property
    def train(self) -> dict:
        return self.config["train"]

    @property
    def objective(self) -> str:
        """The training loss in words, as the plots name it."""
        return describe_loss(self.train.get("loss", "charbonnier"), self.train.get("ssim_weight", 0.0))

    @property
    def validated(self) -> bool:
        """False for a run on all its pairs (--split full): nothing held out to choose an epoch with."""
        return any(r.get("val_psnr") is not None for r in self.history)

    @property
    def best(self) -> dict:
        """The epoch whose weights are in best.safetensors: the best validated, else the last."""
        if not self.validated:
            return self.history[-1]
        return max((r for r in self.history if r.get("val_psnr") is not None), key=lambda r: r["val_psnr"])

    @property
    def checkpoint(self) -> str:
        b = self.best
        if not self.validated:
            return f"epoch {b['epoch']}, step {b['step']} (the last; no validation)"
        return f"epoch {b['epoch']}, step {b['step']}, {b['val_psnr']:.2f} dB"

    @property
    def minutes(self) -> float:
        return self.history[-1]["time"] / 60

    def recipe(self, previous: Stage | None, number: int | None) -> str:
        """The stage's recipe in words; `previous`, `number`: the stage it started from and its number, if any."""
        t = self.train
        loss = self.objective
        ema = f"; validated and kept: a moving average of the weights (decay {t['ema']:g})" if t.get("ema") else ""
        warmup = f" with {t['warmup_steps']} warm-up steps" if t["schedule"] == "cosine" else ""
        if t.get("train_time") and t["schedule"] == "cosine":
            warmup += f", annealed over {t['train_time'] / 60:g} minutes of training"
        if previous is not None:
            start = f"from stage {number}'s {'best' if previous.validated else 'last'} weights"
        else:
            start = f"from `{Path(t['init']).name}`" if t.get("init") else "from scratch"
        return (f"{start}; {loss} loss, Adam lr {t['lr']:g}, {t['schedule']} schedule{warmup}, batch "
                f"{t['batch_size']} x {t['crop']}x{t['crop']} crops{', 8 flips/rotations' if t['augment'] else ''}{ema}")  # fmt: skip


def _length(train: dict, validated: bool) -> str:
    """How a stage's length was set: epochs of so many steps, or a training time (in epochs of so many steps)."""
    if train.get("train_time"):
        # An epoch without --steps-per-epoch is one pass over the training pairs.
        epoch = f"{train['steps_per_epoch']} steps" if train.get("steps_per_epoch") else None
        every = f"validated every {epoch or 'epoch'}" if validated else f"in epochs of {epoch or 'one pass over the pairs'}"
        return f"{train['train_time'] / 60:g} minutes of training, {every}"
    return f"{train['epochs']} epochs of {train['steps_per_epoch']}"


def other_hardware(stages: list[Stage], reference: dict) -> str:
    """Where a staged run ran on other hardware or in another precision than `reference` (a runtime
    record): stages started elsewhere, and resumes (recorded since 2026-12-01) that changed machine."""

    def key(runtime: dict) -> tuple:
        return runtime["hardware"], runtime["precision"]

    notes = []
    for i, stage in enumerate(stages, 1):
        segments = [(f"stage {i}", stage.config["runtime"])]
        segments += [(f"stage {i} from step {r['step']:,}", r["runtime"]) for r in stage.config.get("resumes", [])]
        for label, runtime in segments:
            if key(runtime) != key(reference):
                notes.append(f"{label} on {runtime['hardware']} ({runtime['precision']})")
    return "; ".join(notes)


def _cell(row: dict, key: str, fmt: str) -> str:
    return "-" if row.get(key) is None else format(row[key], fmt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="training run folders (config.json, metrics.jsonl, "
                        "best.safetensors); several for a staged run, in order")  # fmt: skip
    parser.add_argument("--name", required=True)
    parser.add_argument("--eval", required=True, type=Path, help="paired test folder (LOL eval15)")
    parser.add_argument("--command", required=True, help="the command that trained the run, for the card")
    parser.add_argument("--title", default=None)
    parser.add_argument("--note", default="", help="a paragraph for the card's training section")
    parser.add_argument("--root", type=Path, default=ROOT, help="where src/mirnet/pretrained/ and docs/models/ are "
                        "written (default: this repository)")  # fmt: skip
    args = parser.parse_args()

    stages = [Stage.read(folder) for folder in args.runs]
    final = stages[-1]
    weights = final.folder / "best.safetensors"
    record = read_metadata(weights)
    model = load_weights(weights)
    best, config, runtime_record = final.best, final.config, final.config["runtime"]
    total_minutes = sum(stage.minutes for stage in stages)
    total_steps = sum(stage.history[-1]["step"] for stage in stages)

    out = args.root / "docs" / "models" / args.name
    pairs = load_pairs(args.eval)
    # fp32 whatever the CPU: the card's numbers are what every machine reproduces (bf16 autocast,
    # chosen on CPUs that run it natively, moves eval15 PSNR by about 0.003 dB).
    runtime = select_runtime("cpu", "fp32")
    result = evaluate(pairs, {"mirnet": model_method(model, runtime)}, keep_outputs=4, progress=True)
    written = result.write(out)
    # The seeds' figure 10: input | autocontrast | MIRNet | ground truth.
    from mirnet.baselines import BASELINES

    figure_eval = evaluate(pairs[:4], {"autocontrast": BASELINES["autocontrast"], "mirnet": model_method(model, runtime)},
                           keep_outputs=4, progress=False)  # fmt: skip
    comparison_figure(figure_eval, pairs[:4], ["input", "autocontrast", "mirnet"], out / "comparison.png", images=4)
    means = next(m for m in result.means() if m["method"] == "mirnet")

    params = count_parameters(model)
    macs = count_macs(model, 400, 600)
    train = final.train
    metrics = {"eval15": {"psnr": round(means["psnr"], 2), "ssim": round(means["ssim"], 4),
                          "gt_mean_psnr": round(means["gt_mean_psnr"], 2)}}  # fmt: skip
    in_stages = f" in {len(stages)} stages" if len(stages) > 1 else ""
    of_last = " of the last stage" if len(stages) > 1 else ""
    chosen = f"best validation epoch {best['epoch']}{of_last}" if final.validated else "its last epoch (no validation)"
    summary = (f"LOL our485 ({train['split']} split), {total_steps} steps{in_stages} in {total_minutes:.0f} min on "
               f"{runtime_record['hardware']} ({runtime_record['precision']}); {chosen}")  # fmt: skip
    meta = {"name": args.name, "parameters": params, "gmacs_600x400": round(macs / 1e9, 2), "metrics": metrics,
            "training": {**record.get("training", {}), "summary": summary, "command": args.command}}  # fmt: skip
    target = args.root / "src" / "mirnet" / "pretrained" / f"{args.name}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Checked in a scratch file first, so that a failed check leaves the shipped weights as they were.
    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / target.name
        save_weights(model, trial, metadata=meta)
        check = load_weights(trial)
        x = torch.rand(1, 3, 32, 48)
        with torch.no_grad():
            # channels_last (left by evaluation) vs contiguous layout: equal up to float rounding
            if not torch.allclose(check(x), model(x), atol=1e-5):
                raise SystemExit("shipped weights would not reproduce the run's model; nothing shipped")
    save_weights(model, target, metadata=meta)

    stage_rows = "\n".join(
        f"| {i} | {s.recipe(stages[i - 2] if i > 1 else None, i - 1)} | {s.history[-1]['step']} "
        f"({_length(s.train, s.validated)}) | {s.minutes:.1f} | {s.checkpoint} |"
        for i, s in enumerate(stages, 1)
    )
    rows = "\n".join(
        f"| {i} | {r['epoch']} | {r['step']} | {r['train_loss']:.4f} | {_cell(r, 'val_loss', '.4f')} | "
        f"{_cell(r, 'val_psnr', '.2f')} | {_cell(r, 'val_ssim', '.4f')} | {r['lr']:.2e} | {r['time'] / 60:.1f} |"
        for i, s in enumerate(stages, 1)
        for r in s.history
    )
    held_out = len(find_pairs(train["data"])) - len(config["train_pairs"])  # whole scenes: at least val_pairs
    if final.validated:
        validation = "; ".join(f"stage {i}: the first {s.train['val_limit'] or len(s.config['val_pairs'])}"
                               for i, s in enumerate(stages, 1))  # fmt: skip
        data_line = (f"{len(config['train_pairs'])} training pairs, {held_out} held out by scene; validation on the "
                     f"held-out pairs, {validation}")  # fmt: skip
        checkpoint_line = f"best validation PSNR{of_last}: {final.checkpoint}"
        curve = f"![validation PSNR{of_last}]({args.name}/psnr.png)"
        record_title = "Per-epoch record (validation on held-out our485 scenes, never eval15; PSNR and SSIM on 8-bit RGB)"
        eval_title = "LOL eval15 (scored once, after selection on validation)"
    else:
        data_line = (f"all {len(config['train_pairs'])} pairs, none held out: no validation, so no epoch or run was "
                     "chosen by a score; each stage ends where its schedule ends")  # fmt: skip
        checkpoint_line = f"the end{of_last}: {final.checkpoint}"
        curve = f"![training loss{of_last}]({args.name}/loss.png)"
        record_title = "Per-epoch record (no validation pairs; eval15 never seen in training)"
        eval_title = "LOL eval15 (scored once; its only score: nothing was held out)"
    per_image = result.to_markdown(per_image=True)
    elsewhere = other_hardware(stages, runtime_record)
    cfg = model.config
    card = f"""# {args.title or args.name}

A MIRNet of the paper's architecture at a compact size, trained from scratch on LOL on a
laptop-class CPU. Shipped in the package as `src/mirnet/pretrained/{args.name}.safetensors`
({target.stat().st_size / 1e6:.2f} MB, fp32); `mirnet.load_model("{args.name}")`.

## Model

| | |
| --- | --- |
| architecture | MIRNet: {cfg.num_rrg} RRG x {cfg.num_mrb} MRB, {cfg.num_streams} streams, {cfg.daus_per_stream} DAUs per stream, width {cfg.channels}, official weight sharing {'on' if cfg.share_weights else 'off'} |
| parameters | {params:,} |
| cost | {macs / 1e9:.2f} GMACs per 600x400 image |
| configuration | `{json.dumps(cfg.to_dict())}` |

## Training

| | |
| --- | --- |
| data | LOL `our485`, split `{train['split']}` ({data_line}) |
| steps | {total_steps}{in_stages} |
| wall time | {total_minutes:.1f} min{' (validation included)' if final.validated else ''} |
| hardware | {runtime_record['hardware']}, {runtime_record['threads']} threads, torch {runtime_record['torch']}, {runtime_record['precision']}{' + channels_last' if runtime_record['channels_last'] else ''} (CPU capability {runtime_record['cpu_capability']}){'; ' + elsewhere if elsewhere else ''} |
| checkpoint | {checkpoint_line} |

| stage | recipe | steps | wall time (min) | checkpoint shipped or passed on |
| ---: | --- | ---: | ---: | --- |
{stage_rows}

{args.note}

Reproduce the weights:

```bash
{args.command}
```

{record_title}:

| stage | epoch | step | train loss | val loss (Charbonnier) | val PSNR (dB) | val SSIM | lr | time (min) |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

{curve}

## {eval_title}

{CONVENTIONS}

Mean: **PSNR {means['psnr']:.2f} dB, SSIM {means['ssim']:.4f}** (GT-mean PSNR {means['gt_mean_psnr']:.2f} dB).

{per_image}
![input | autocontrast | mirnet | ground truth]({args.name}/comparison.png)

Reproduce the scores (`{', '.join(p.name for p in written)}` in `docs/models/{args.name}/`):

```bash
./run.sh evaluate --data ../shared/data/LOL/eval15 --model {args.name} --label mirnet --precision fp32 --out runs/eval15-{args.name}
```
"""
    plot, stale = ("psnr.png", "loss.png") if final.validated else ("loss.png", "psnr.png")
    with tempfile.TemporaryDirectory() as scratch:  # redrawn from the record: older runs named no objective
        plot_history(final.history, Path(scratch), final.objective)
        shutil.copy(Path(scratch) / plot, out / plot)
    (out / stale).unlink(missing_ok=True)  # a predecessor's curve, which the new card does not show
    for i, stage in enumerate(stages, 1):  # the curves, for comparing recipes later
        shutil.copy(stage.folder / "metrics.csv", out / f"metrics-stage{i}.csv")
    card_path = args.root / "docs" / "models" / f"{args.name}.md"
    history = earlier_versions(card_path.read_text()) if card_path.exists() else ""
    with atomic_output(card_path) as tmp:
        tmp.write_text(card + ("\n" + history if history else ""))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
