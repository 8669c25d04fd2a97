"""Compare trained models on held-out our485 scenes that none of them trained on (never eval15):
the fair way to choose between finalists of different runs.

    .venv/bin/python scripts/compare_on_validation.py --data ../shared/data/LOL/our485 --val-pairs 64 \
        --models lol-compact,lol-micro

A model is a bundled name or a weights file; a run's last.pt stands for the weights where that run
stopped (its moving average, if it kept one), to compare where runs end with the epochs they picked.
A model given as A+B+... is the uniform average of those weights (a "model soup", Wortsman et al.
2022), which only makes sense for runs fine-tuned from the same starting weights.
With --self-ensemble each model also gets a row "NAME x8": the mean of its 8 flipped/rotated views
(mirnet.enhance.self_ensemble, what `mirnet enhance --self-ensemble` does), at 8 times the cost.
With --ensemble a last row scores the mean of all the models' outputs (an ensemble of separately
trained models, at the sum of their costs). With --training-pairs N the same table is made on N
evenly spaced pairs of the split's training side: a model that scores alike on both does not
overfit its training pairs. Only a model that held out exactly --val-pairs trained on all of them;
one that held out more never saw some of them. A model whose record says it trained on some of the
held-out pairs (a run on all pairs, --split full, or a split that held out fewer or other pairs) is
refused.

The seeds split holds out whole scenes in a fixed shuffled order, so the pairs held out with
--val-pairs 64 are also held out by every run that held out 64 or more (lol-compact held out 185).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from mirnet import MIRNet, count_macs, count_parameters, load_model
from mirnet.data import load_pairs, split_by_scene, to_tensor, to_uint8
from mirnet.evaluate import evaluate, model_forward, model_method
from mirnet.runtime import Runtime, hardware_name, select_runtime
from mirnet.train import latest_weights, trained_on_held_out, training_record


def load(source: str) -> MIRNet:
    return latest_weights(source) if source.endswith(".pt") else load_model(source)


def average(sources: list[str]) -> MIRNet:
    """The uniform average of the weights of these models (all of one configuration)."""
    models = [load(source) for source in sources]
    if any(m.config != models[0].config for m in models):
        raise SystemExit(f"{'+'.join(sources)}: the models have different configurations")
    states = [m.state_dict() for m in models]
    models[0].load_state_dict({k: sum(state[k] for state in states) / len(states) for k in states[0]})
    return models[0]


class Row(NamedTuple):
    method: Callable[[np.ndarray], np.ndarray]
    params: int
    gmacs: float  # per 600x400 image


def output_mean(models: list[MIRNet], runtime: Runtime) -> Callable[[np.ndarray], np.ndarray]:
    """A method: the mean of the models' clamped outputs, rounded to 8 bits once (so not the mean
    of model_method's 8-bit outputs)."""
    forwards = [model_forward(m, runtime) for m in models]

    def enhance(image: np.ndarray) -> np.ndarray:
        x = to_tensor(image)[None]
        return to_uint8(torch.stack([forward(x) for forward in forwards]).mean(0)[0])

    return enhance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--val-pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the seeds split: a run's split_seed where it has one, else its seed")
    parser.add_argument("--models", default="lol-compact,lol-micro")
    parser.add_argument("--self-ensemble", action="store_true", help="also score each model's x8 self-ensemble")
    parser.add_argument("--ensemble", action="store_true",
                        help="also score the mean of all the models' outputs")  # fmt: skip
    parser.add_argument("--training-pairs", type=int, default=0,
                        help="also score N of the training pairs (those of models that held out exactly "
                             "--val-pairs)")  # fmt: skip
    args = parser.parse_args()

    training, held = split_by_scene(load_pairs(args.data), args.val_pairs, seed=args.seed)
    if args.ensemble and len(args.models.split(",")) < 2:
        parser.error("--ensemble needs at least two models")
    if not 0 <= args.training_pairs <= len(training):
        parser.error(f"--training-pairs must be between 0 and {len(training)}, the training side's size")
    # A model that trained on some of the held-out pairs would be scored on its own training data.
    for name in args.models.split(","):
        for source in name.split("+"):
            reason = trained_on_held_out(training_record(source), args.data, args.val_pairs, args.seed)
            if reason:
                raise SystemExit(f"{source}: cannot be scored on these held-out pairs: {reason}")
    runtime = select_runtime("cpu", "fp32")  # as the model cards: the same numbers on every CPU
    models = {name: average(name.split("+")) for name in args.models.split(",")}
    rows = {f"`{name}`": Row(model_method(m, runtime), count_parameters(m), count_macs(m, 400, 600) / 1e9)
            for name, m in models.items()}  # fmt: skip
    if args.self_ensemble:
        for name, m in models.items():
            single = rows[f"`{name}`"]
            method = model_method(m, runtime, self_ensemble=True)
            rows[f"`{name} x8`"] = Row(method, single.params, 8 * single.gmacs)
    if args.ensemble:
        singles = [rows[f"`{name}`"] for name in models]
        method = output_mean(list(models.values()), runtime)
        label = " + ".join(f"`{name}`" for name in models) + ", outputs averaged"
        rows[label] = Row(method, sum(r.params for r in singles), sum(r.gmacs for r in singles))
    sets = [(f"{len(held)} held-out pairs", held)]
    if args.training_pairs:
        picks = np.linspace(0, len(training) - 1, args.training_pairs).round().astype(int)
        sets.append((f"{args.training_pairs} evenly spaced training pairs (of {len(training)})",
                     [training[i] for i in picks]))  # fmt: skip
    for title, pairs in sets:
        result = evaluate(pairs, {label: row.method for label, row in rows.items()})
        means = {row["method"]: row for row in result.means()}
        print(f"{title} of {args.data} (seeds split, seed {args.seed}); {hardware_name()}")
        print("| model | params | GMACs @600x400 | PSNR (dB) | SSIM | GT-mean PSNR (dB) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, row in rows.items():
            mean = means[label]
            print(f"| {label} | {row.params:,} | {row.gmacs:.1f} | "
                  f"{mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['gt_mean_psnr']:.2f} |")  # fmt: skip
        print()


if __name__ == "__main__":
    main()
