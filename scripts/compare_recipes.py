"""Training recipes side by side: validation PSNR of each (multi-stage) run against its cumulative
training steps and wall-clock time, as a plot and a table.

    .venv/bin/python scripts/compare_recipes.py \
        "v1 (2026-11-23)=docs/results/recipes/v1-stage1.csv,docs/results/recipes/v1-stage2.csv" \
        "v2=docs/results/recipes/v2-stage1.csv,docs/results/recipes/v2-stage2.csv" \
        "v3=docs/results/recipes/v3-stage1.csv,docs/results/recipes/v3-stage2.csv" \
        "v4 (v3 in bf16)=docs/results/bf16-scratch/stage1.csv,docs/results/bf16-scratch/stage2.csv" \
        --out docs/results/recipes/val-vs-steps.png

Each argument is LABEL=CSV[,CSV...]: the metrics.csv of every stage of one run, in order (the files
that `mirnet train` writes and scripts/ship_model.py keeps beside the model card). A later stage's
steps and time continue from the end of the earlier ones. Runs on different machines compare by
steps; their times are each machine's own. --per-epoch also prints validation PSNR / SSIM of every
run at each stage's epochs, with the spread (highest - lowest PSNR) across runs: runs of one recipe
with different seeds, epoch by epoch.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_run(files: list[str]) -> list[dict]:
    """The rows of all stages, with steps and seconds made cumulative and a 'stage' column."""
    rows, steps, seconds = [], 0, 0.0
    for stage, name in enumerate(files, 1):
        with open(name, newline="") as f:
            stage_rows = [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(f)]
        for r in stage_rows:
            rows.append({**r, "stage": stage, "step": steps + r["step"], "time": seconds + r["time"]})
        steps, seconds = rows[-1]["step"], rows[-1]["time"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=stage1.csv[,stage2.csv...]")
    parser.add_argument("--out", type=Path, default=Path("docs/results/recipes/val-vs-steps.png"))
    parser.add_argument("--per-epoch", action="store_true", help="also a table of every run at each epoch")
    parser.add_argument("--train-loss", action="store_true", help="plot training loss instead of validation PSNR, "
                        "and add a table of every run's training loss at each epoch, with how far the first run "
                        "lies outside the others' range")  # fmt: skip
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        label, _, files = spec.partition("=")
        if not files:
            parser.error(f"{spec}: expected LABEL=CSV[,CSV...]")
        runs[label] = read_run(files.split(","))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "train_loss" if args.train_loss else "val_psnr"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    for index, (label, rows) in enumerate(runs.items()):
        for ax, key in zip(axes, ("step", "time")):
            xs = [r[key] / (60 if key == "time" else 1) for r in rows]
            # Earlier runs on top: a run that extends another (a further stage) shows only its extension.
            ys = [float("nan") if r[metric] is None else r[metric] for r in rows]  # no val PSNR: --split full
            ax.plot(xs, ys, marker="o", ms=3, label=label, zorder=len(runs) - index)
            for before, after, x in zip(rows, rows[1:], xs):  # a dashed line where each later stage starts
                if after["stage"] != before["stage"]:
                    ax.axvline(x, color=ax.lines[-1].get_color(), alpha=0.3, ls="--")
    axes[0].set_xlabel("training steps (all stages)")
    axes[1].set_xlabel("wall-clock minutes (each run on its own machine)")
    for ax in axes:
        ax.set_ylabel("training loss (each run's objective)" if args.train_loss else "validation PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")

    print("| recipe | stages | steps | time (min) | best val PSNR (dB) | its val SSIM |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, rows in runs.items():
        last_stage = [r for r in rows if r["stage"] == rows[-1]["stage"] and r["val_psnr"] is not None]
        best = max(last_stage, key=lambda r: r["val_psnr"]) if last_stage else {}
        psnr = "-" if not best else f"{best['val_psnr']:.2f}"
        ssim = "-" if best.get("val_ssim") is None else f"{best['val_ssim']:.4f}"
        print(f"| {label} | {rows[-1]['stage']:.0f} | {rows[-1]['step']:,.0f} | {rows[-1]['time'] / 60:.1f} | "
              f"{psnr} | {ssim} |")  # fmt: skip
    if args.per_epoch:
        print_per_epoch(runs)
    if args.train_loss:
        print_train_loss(runs)


def by_epoch(runs: dict[str, list[dict]]) -> tuple[dict[str, dict[tuple, dict]], list[tuple]]:
    """Each run's rows by (stage, epoch), and every (stage, epoch) that any run has, in order."""
    at = {label: {(r["stage"], r["epoch"]): r for r in rows} for label, rows in runs.items()}
    return at, sorted({key for rows in at.values() for key in rows})


def print_per_epoch(runs: dict[str, list[dict]]) -> None:
    """Validation PSNR / SSIM of every run at each (stage, epoch) that any run has; '-' where one has not."""
    at, keys = by_epoch(runs)
    print()
    print("| stage | epoch | " + " | ".join(runs) + " | spread (dB) |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in runs) + " | ---: |")
    for key in keys:
        cells, psnrs = [], []
        for rows in at.values():
            row = rows.get(key)
            if row is None or row["val_psnr"] is None:  # not run that far, or no validation (--split full)
                cells.append("-")
                continue
            psnrs.append(row["val_psnr"])
            ssim = "" if row.get("val_ssim") is None else f" / {row['val_ssim']:.4f}"
            cells.append(f"{row['val_psnr']:.2f}{ssim}")
        spread = f"{max(psnrs) - min(psnrs):.2f}" if len(psnrs) > 1 else "-"
        print(f"| {key[0]} | {key[1]:.0f} | " + " | ".join(cells) + f" | {spread} |")


def print_train_loss(runs: dict[str, list[dict]]) -> None:
    """Training loss of every run at each (stage, epoch), and the first run's distance outside the
    range of the others there (0: inside): whether a run without validation trained as the others did."""
    at, keys = by_epoch(runs)
    first, *others = at
    print()
    print("| stage | epoch | " + " | ".join(runs) + f" | {first}: outside the others' range by |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in runs) + " | ---: |")
    distances = []
    for key in keys:
        cells = [f"{rows[key]['train_loss']:.4f}" if key in rows else "-" for rows in at.values()]
        theirs = [at[label][key]["train_loss"] for label in others if key in at[label]]
        distance = "-"
        if key in at[first] and theirs:
            mine = at[first][key]["train_loss"]
            distances.append(max(min(theirs) - mine, mine - max(theirs), 0.0))
            distance = f"{distances[-1]:.4f}"
        print(f"| {key[0]} | {key[1]:.0f} | " + " | ".join(cells) + f" | {distance} |")
    if distances:
        inside = sum(d == 0 for d in distances)
        print(f"\n{first}: inside the others' range at {inside} of {len(distances)} epochs, at most "
              f"{max(distances):.4f} outside")


if __name__ == "__main__":
    main()
