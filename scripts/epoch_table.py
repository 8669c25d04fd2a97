"""Print a training run's per-epoch records (each stage's metrics.csv) as the markdown table of docs/results.

    .venv/bin/python scripts/epoch_table.py runs/NAME/stage1/metrics.csv runs/NAME/stage2/metrics.csv

One row per epoch: stage (the order of the files), epoch, step, validation PSNR / SSIM, the
learning rate at the epoch's end, the stage's clock in minutes and its steps/s. An epoch shorter than the
stage's first (a --budget stage cut short by its time) says how many steps it took.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def table(paths: list[Path]) -> str:
    """The markdown table of the stages' metrics.csv files, in the order given."""
    lines = ["| stage | epoch | step | val PSNR / SSIM | lr at the end | time (min) | steps/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for stage, path in enumerate(paths, 1):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"{path}: no epochs recorded")
        epoch_length = int(rows[0]["step"]) // int(rows[0]["epoch"])
        previous = 0
        for row in rows:
            step = int(row["step"])
            epoch = row["epoch"] if step - previous == epoch_length else f"{row['epoch']} ({step - previous:,} steps)"
            previous = step
            # A --split full stage holds nothing out, so it has no validation to show.
            val = f"{float(row['val_psnr']):.2f} / {float(row['val_ssim']):.4f}" if row["val_psnr"] else "-"
            lines.append(f"| {stage} | {epoch} | {step:,} | {val} "
                         f"| {float(row['lr']):.2e} | {float(row['time']) / 60:.1f} | {float(row['steps_per_s']):.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="each stage's metrics.csv, stage 1 first")
    args = parser.parse_args(argv)
    try:
        print(table(args.metrics))
    except (OSError, ValueError, KeyError) as error:
        print(f"epoch_table.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
