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

The seeds split holds out whole scenes in a fixed shuffled order, so the pairs held out with
--val-pairs 64 are also held out by every run that held out 64 or more (lol-compact held out 185).
"""

from __future__ import annotations

import argparse

from mirnet import MIRNet, count_macs, count_parameters, load_model
from mirnet.data import load_pairs, split_by_scene
from mirnet.evaluate import evaluate, model_method
from mirnet.runtime import hardware_name, select_runtime
from mirnet.train import latest_weights


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--val-pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="lol-compact,lol-micro")
    parser.add_argument("--self-ensemble", action="store_true", help="also score each model's x8 self-ensemble")
    args = parser.parse_args()

    _, held = split_by_scene(load_pairs(args.data), args.val_pairs, seed=args.seed)
    runtime = select_runtime("cpu", "fp32")  # as the model cards: the same numbers on every CPU
    models = {name: average(name.split("+")) for name in args.models.split(",")}
    methods = {name: model_method(m, runtime) for name, m in models.items()}
    passes = dict.fromkeys(models, 1)  # forward passes per image, for the cost column
    if args.self_ensemble:
        methods.update({f"{name} x8": model_method(m, runtime, self_ensemble=True) for name, m in models.items()})
        models.update({f"{name} x8": m for name, m in list(models.items())})
        passes.update({f"{name} x8": 8 for name in list(passes)})
    result = evaluate(held, methods)
    print(f"{len(held)} held-out pairs of {args.data} (seeds split, seed {args.seed}); {hardware_name()}")
    print("| model | params | GMACs @600x400 | PSNR (dB) | SSIM | GT-mean PSNR (dB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    means = {row["method"]: row for row in result.means()}
    for name, model in models.items():
        mean = means[name]
        gmacs = passes[name] * count_macs(model, 400, 600) / 1e9
        print(f"| `{name}` | {count_parameters(model):,} | {gmacs:.1f} | "
              f"{mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['gt_mean_psnr']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
