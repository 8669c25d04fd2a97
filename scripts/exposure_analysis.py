"""How predictable is the exposure that LOL's references ask for? The mean brightness of inputs,
references and a model's outputs, and how well the model guesses each reference's brightness.

    .venv/bin/python scripts/exposure_analysis.py --data ../shared/data/LOL --model lol-compact

For our485's training pairs, its held-out pairs (the seeds split, as in training) and eval15: the
mean and spread of input and reference brightness (mean 8-bit value over pixels and channels) and
the correlation of their logarithms. On the held-out pairs only (never used to train or to choose
on eval15), the model's output brightness: its correlation with the reference's, and its RMS error
beside that of guessing the training references' mean brightness for every image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mirnet import load_model
from mirnet.data import Pair, load_pairs, split_by_scene
from mirnet.evaluate import model_method
from mirnet.runtime import hardware_name, select_runtime


def brightness(images) -> np.ndarray:
    return np.array([image.mean(dtype=np.float64) for image in images])


def log_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.log(a), np.log(b))[0, 1])


def describe(name: str, pairs: list[Pair]) -> None:
    low, high = brightness(p.low for p in pairs), brightness(p.high for p in pairs)
    print(f"| {name} | {len(pairs)} | {low.mean():.1f} ± {low.std():.1f} | {high.mean():.1f} ± {high.std():.1f} | "
          f"{log_correlation(low, high):.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/LOL"), help="holds our485/ and eval15/")
    parser.add_argument("--model", default="lol-compact")
    parser.add_argument("--val-pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, held = split_by_scene(load_pairs(args.data / "our485"), args.val_pairs, seed=args.seed)
    print("| pairs | count | input brightness | reference brightness | correlation of their logs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    describe("our485, training", train)
    describe("our485, held out", held)
    describe("eval15", load_pairs(args.data / "eval15"))

    enhance = model_method(load_model(args.model), select_runtime("cpu", "fp32"))
    output = brightness(enhance(p.low) for p in held)
    reference, low = brightness(p.high for p in held), brightness(p.low for p in held)
    guess = brightness(p.high for p in train).mean()
    rms = lambda estimate: float(np.sqrt(np.mean((estimate - reference) ** 2)))  # noqa: E731
    print(f"\n{args.model} on the {len(held)} held-out pairs ({hardware_name()}, fp32): output brightness "
          f"{output.mean():.1f} ± {output.std():.1f} (reference {reference.mean():.1f} ± {reference.std():.1f}); "
          f"correlation of logs with the reference's {log_correlation(output, reference):.2f}, with the input's "
          f"{log_correlation(output, low):.2f}; RMS error {rms(output):.1f}, against {rms(guess):.1f} for the "
          f"training references' mean ({guess:.1f}) on every image")  # fmt: skip


if __name__ == "__main__":
    main()
