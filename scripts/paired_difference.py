"""Per-image difference between two models scored on the same images: the mean of B - A, its
standard deviation and standard error, and on how many images B is better, for each metric.

    .venv/bin/python scripts/paired_difference.py A/evaluation.csv B/evaluation.csv

Each file is an evaluation.csv that `mirnet evaluate` or scripts/ship_model.py wrote. With 15
images (LOL eval15) a mean difference within about two standard errors of zero does not tell two
models apart: that is what this script is for.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

METRICS = ("psnr", "ssim", "gt_mean_psnr")


def read_scores(path: Path, method: str) -> dict[str, dict[str, float]]:
    """{image: {metric: value}} for one method's rows of an evaluation.csv."""
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("method") == method]
    except OSError as e:
        raise SystemExit(f"error: {path}: {e.strerror or e}") from None
    if not rows:
        raise SystemExit(f"error: {path}: no rows for method {method!r}")
    return {r["image"]: {m: float(r[m]) for m in METRICS} for r in rows}


def paired_difference(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> list[dict]:
    """One summary per metric of B - A over the images both score; the images must be the same."""
    if set(a) != set(b):
        raise ValueError(f"the two files score different images: {sorted(set(a) ^ set(b))[:5]}")
    summaries = []
    for metric in METRICS:
        diffs = [b[image][metric] - a[image][metric] for image in a]
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        summaries.append({"metric": metric, "mean": statistics.fmean(diffs), "sd": sd,
                          "se": sd / len(diffs) ** 0.5, "better": sum(d > 0 for d in diffs),
                          "images": len(diffs)})  # fmt: skip
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="evaluation.csv of the reference model")
    parser.add_argument("b", type=Path, help="evaluation.csv of the model compared with it")
    parser.add_argument("--method", default="mirnet", help="the method column to compare (default: mirnet)")
    parser.add_argument("--method-b", help="B's method column, if it differs from A's")
    parser.add_argument("--digits", type=int, default=2, help="decimals of dB (SSIM gets two more)")
    args = parser.parse_args()
    a = read_scores(args.a, args.method)
    b = read_scores(args.b, args.method_b or args.method)
    try:
        summaries = paired_difference(a, b)
    except ValueError as e:
        sys.exit(f"error: {args.b}: {e}")
    print(f"B - A per image; A: {args.a}, B: {args.b}")
    print("| metric | mean | sd | standard error | B better on |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for s in summaries:
        digits = args.digits + 2 if s["metric"] == "ssim" else args.digits
        print(f"| {s['metric']} | {s['mean']:+.{digits}f} | {s['sd']:.{digits}f} | {s['se']:.{digits}f} | "
              f"{s['better']} of {s['images']} |")


if __name__ == "__main__":
    main()
