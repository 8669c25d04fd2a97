"""How predictable is the exposure that LOL's references ask for? The mean brightness of inputs,
references and a model's outputs, and how well the model guesses each reference's brightness.

    .venv/bin/python scripts/exposure_analysis.py --data ../shared/data/LOL --model lol-compact

For our485's training pairs, its held-out pairs (the seeds split, as in training) and eval15: the
mean and spread of input and reference brightness (mean 8-bit value over pixels and channels) and
the correlation of their logarithms. On the held-out pairs only (never used to train or to choose
on eval15), the model's output brightness: its correlation with the reference's, and its RMS error
beside that of guessing the training references' mean brightness for every image.

With --calibration it also tries to correct the model's exposure after the fact: each output is
scaled so that its log brightness moves toward a centre m by a factor alpha (alpha < 1 shrinks the
model's guesses toward m, alpha > 1 spreads them), with alpha and m fitted on the training pairs'
outputs to maximize their mean PSNR, then applied to the held-out pairs. It also reports the best
fit on the held-out pairs themselves, an in-sample bound on what such a correction could gain.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mirnet import load_model
from mirnet.data import Pair, load_pairs, split_by_scene, to_tensor
from mirnet.evaluate import model_forward, model_method
from mirnet.metrics import psnr, ssim
from mirnet.runtime import hardware_name, select_runtime


def brightness(images) -> np.ndarray:
    return np.array([image.mean(dtype=np.float64) for image in images])


def log_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.log(a), np.log(b))[0, 1])


def describe(name: str, pairs: list[Pair]) -> None:
    low, high = brightness(p.low for p in pairs), brightness(p.high for p in pairs)
    print(f"| {name} | {len(pairs)} | {low.mean():.1f} ± {low.std():.1f} | {high.mean():.1f} ± {high.std():.1f} | "
          f"{log_correlation(low, high):.2f} |")  # fmt: skip


def calibrated(output: np.ndarray, alpha: float, centre: float) -> np.ndarray:
    """A float output (0-255) scaled so its log brightness is centre's plus alpha times its distance from it."""
    level = max(float(output.mean()), 1e-3)
    gain = np.exp(np.log(centre) + alpha * (np.log(level) - np.log(centre)) - np.log(level))
    return np.clip(output * gain, 0, 255).round().astype(np.uint8)


def fit_calibration(outputs: list[np.ndarray], pairs: list[Pair]) -> tuple[float, float, float]:
    """(mean PSNR, alpha, centre): the grid point that scores best on these pairs (every 2nd pixel)."""
    outputs = [o[::2, ::2] for o in outputs]
    targets = [p.high[::2, ::2] for p in pairs]
    grid = [(float(np.mean([psnr(calibrated(o, alpha, centre), t) for o, t in zip(outputs, targets)])),
             round(alpha, 2), float(centre))
            for alpha in np.arange(0.0, 1.51, 0.1) for centre in range(80, 161, 5)]  # fmt: skip
    return max(grid)


def calibration(model, train: list[Pair], held: list[Pair]) -> None:
    """Print the held-out scores of the model's outputs as they are and with the exposure correction."""
    forward = model_forward(model, select_runtime("cpu", "fp32"))
    run = lambda pairs: [forward(to_tensor(p.low)[None])[0].permute(1, 2, 0).numpy() * 255 for p in pairs]  # noqa: E731
    train_out, held_out = run(train), run(held)
    for name, outputs, pairs in (("training", train_out, train), ("held-out", held_out, held)):
        print(f"{name} pairs: correlation of output and reference log brightness "
              f"{log_correlation(brightness(outputs), brightness(p.high for p in pairs)):.2f}")
    _, alpha, centre = fit_calibration(train_out, train)
    bound, best_alpha, best_centre = fit_calibration(held_out, held)
    print("| held-out pairs | alpha | centre | PSNR (dB) | SSIM |\n| --- | ---: | ---: | ---: | ---: |")
    for label, a, c in (("as the model outputs them", 1.0, 100.0), ("calibrated, fitted on the training pairs", alpha,
                        centre), ("calibrated, fitted on these pairs (in-sample bound)", best_alpha, best_centre)):
        outputs = [calibrated(o, a, c) for o in held_out]
        scored = [(psnr(o, p.high), ssim(o, p.high)) for o, p in zip(outputs, held)]
        centre_text = "-" if a == 1.0 else f"{c:.0f}"  # alpha 1 leaves every output as it is
        print(f"| {label} | {a:.1f} | {centre_text} | {np.mean([s[0] for s in scored]):.2f} | "
              f"{np.mean([s[1] for s in scored]):.4f} |")  # fmt: skip
    print(f"(the in-sample bound's PSNR on every 2nd pixel: {bound:.2f} dB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/LOL"), help="holds our485/ and eval15/")
    parser.add_argument("--model", default="lol-compact")
    parser.add_argument("--val-pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", action="store_true",
                        help="also fit and score a global exposure correction of the model's outputs")  # fmt: skip
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
    if args.calibration:
        print()
        calibration(load_model(args.model), train, held)


if __name__ == "__main__":
    main()
