"""Training speed of each execution mode, as steps/s and as a ratio to plain fp32 in the same process.

    .venv/bin/python scripts/bench_train.py --preset ablation-1x1 --channels 16 [--steps 5] [--compile]
        [--ssim-weight 0.5]
    .venv/bin/python scripts/bench_train.py --preset compact --precisions bf16 --against c712521 [--rounds 5]

With --against-config JSON, each mode instead times the model with those MIRNetConfig overrides
on top (e.g. '{"share_weights": false}') against the model without them, in alternating rounds of
--steps Adam steps, and prints both rates and their ratio per round and as medians.

With --against REV, each mode instead times today's model code against src/mirnet/model.py as it was
at commit REV (loaded from git beside today's package), the same weights and batch, in rounds of
--steps steps that alternate which code goes first, and prints both rates and their ratio per round
and as medians. Its optimizer is SGD at lr 0, so that both keep the same weights: a step there is
the forward and backward pass with the loss, without Adam's update.

Modes: fp32; fp32 + channels_last; bf16 autocast (+ channels_last); each optionally torch.compile'd;
on CUDA also fp16 autocast. Batch 4 of 128x128 crops (the training default) unless told otherwise;
the loss is Charbonnier, plus W x (1 - SSIM) with --ssim-weight W (the shipped recipe's 0.5).
Machines here are noisy: compare ratios within one run, and read the recorded hardware line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

from mirnet import create_model
from mirnet.cli import _model_overrides
from mirnet.runtime import Runtime, hardware_name
from mirnet.train import train_step


def new_model(args) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(args.preset, **_model_overrides(args))


def batch(args) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (args.batch, 3, args.crop, args.crop)
    return torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)


def timed_steps(model, optimizer, runtime: Runtime, args, steps: int) -> float:
    low, high = batch(args)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, low, high, runtime, args.ssim_weight)  # .item() inside synchronises
    return steps / (time.perf_counter() - start)


def steps_per_second(runtime: Runtime, args, compiled: bool) -> float:
    model = runtime.prepare(new_model(args))
    trained = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    timed_steps(trained, optimizer, runtime, args, args.warmup)
    return timed_steps(trained, optimizer, runtime, args, args.steps)


def model_code_at(revision: str) -> types.ModuleType:
    """src/mirnet/model.py as it was at a git commit, as a module beside today's (its relative
    imports resolve to today's package)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{revision}:src/mirnet/model.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    module = types.ModuleType(f"mirnet._model_at_{revision}")
    module.__package__ = "mirnet"
    sys.modules[module.__name__] = module  # as for any import: dataclasses and pickling look it up there
    exec(compile(source, f"{revision}:src/mirnet/model.py", "exec"), module.__dict__)
    return module


def against(runtime: Runtime, args, old_code: types.ModuleType) -> dict:
    """Today's model code and the old one, the same weights, timed in alternating rounds."""
    today = new_model(args)
    old = old_code.MIRNet(today.config)
    old.load_state_dict(today.state_dict())
    models = {"old": runtime.prepare(old), "today": runtime.prepare(today)}
    # Optimizers that leave the weights as they are: every round of either code sees the same model.
    optimizers = {name: torch.optim.SGD(model.parameters(), lr=0.0) for name, model in models.items()}
    low, high = batch(args)
    losses = {name: train_step(model, optimizers[name], low, high, runtime, args.ssim_weight)
              for name, model in models.items()}  # fmt: skip
    rates = alternating_rates(models, optimizers, runtime, args)
    ratios = [new / old for new, old in zip(rates["today"], rates["old"])]
    return {"loss_old": losses["old"], "loss_today": losses["today"], "steps_per_s_old": rates["old"],
            "steps_per_s_today": rates["today"], "ratio_per_round": ratios,
            "median_ratio": statistics.median(ratios)}  # fmt: skip


def alternating_rates(models: dict, optimizers: dict, runtime: Runtime, args) -> dict[str, list[float]]:
    """Steps/s of two models in --rounds rounds, alternating which goes first (a machine's drift
    then falls on both alike)."""
    first, second = models
    rates = {name: [] for name in models}
    for round_ in range(args.rounds):
        for name in (first, second) if round_ % 2 == 0 else (second, first):
            timed_steps(models[name], optimizers[name], runtime, args, args.warmup)
            rates[name].append(timed_steps(models[name], optimizers[name], runtime, args, args.steps))
    return rates


def against_config(runtime: Runtime, args) -> dict:
    """The model, and the model with --against-config's overrides on top, trained with Adam as in
    `mirnet train`, timed in alternating rounds."""
    torch.manual_seed(0)
    other = create_model(args.preset, **{**_model_overrides(args), **json.loads(args.against_config)})
    models = {"base": runtime.prepare(new_model(args)), "other": runtime.prepare(other)}
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-4) for name, model in models.items()}
    rates = alternating_rates(models, optimizers, runtime, args)
    ratios = [o / b for o, b in zip(rates["other"], rates["base"])]
    return {"steps_per_s_base": rates["base"], "steps_per_s_other": rates["other"], "ratio_per_round": ratios,
            "median_ratio": statistics.median(ratios)}  # fmt: skip


def mode_name(runtime: Runtime, compiled: bool = False) -> str:
    layout = " + channels_last" if runtime.channels_last else ""
    return f"{runtime.precision}{layout}{' + compile' if compiled else ''}"


def compare_modes(args, modes: list[Runtime]) -> list[dict]:
    results, reference = [], None
    for compiled in [False, True] if args.compile else [False]:
        for runtime in modes:
            rate = steps_per_second(runtime, args, compiled)
            reference = reference or rate
            name = mode_name(runtime, compiled)
            results.append({"mode": name, "steps_per_s": rate, "ratio_to_fp32": rate / reference})
            print(f"{name:<32} {rate:8.3f} steps/s   x{rate / reference:.2f}", flush=True)
    return results


def compare_code(args, modes: list[Runtime]) -> list[dict]:
    old_code, results = model_code_at(args.against), []
    print(f"today's model code against {args.against}: {args.rounds} rounds of {args.steps} steps, "
          "alternating which goes first")  # fmt: skip
    for runtime in modes:
        result = {"mode": mode_name(runtime), **against(runtime, args, old_code)}
        results.append(result)
        print(f"{mode_name(runtime):<24} first-step loss {result['loss_old']:.6f} ({args.against}), "
              f"{result['loss_today']:.6f} (today)")  # fmt: skip
        for old, new in zip(result["steps_per_s_old"], result["steps_per_s_today"]):
            print(f"{'':<24} {old:7.3f} -> {new:7.3f} steps/s   x{new / old:.3f}")
        print(f"{'':<24} median of rounds: x{result['median_ratio']:.3f}", flush=True)
    return results


def compare_configs(args, modes: list[Runtime]) -> list[dict]:
    results = []
    print(f"with {args.against_config} against without: {args.rounds} rounds of {args.steps} steps, "
          "alternating which goes first")  # fmt: skip
    for runtime in modes:
        result = {"mode": mode_name(runtime), **against_config(runtime, args)}
        results.append(result)
        for base, other in zip(result["steps_per_s_base"], result["steps_per_s_other"]):
            print(f"{mode_name(runtime):<24} {base:7.3f} -> {other:7.3f} steps/s   x{other / base:.3f}")
        print(f"{mode_name(runtime):<24} median of rounds: x{result['median_ratio']:.3f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ablation-1x1")
    parser.add_argument("--channels", type=int)
    parser.add_argument("--model-config", help='more MIRNetConfig overrides as JSON, e.g. \'{"num_streams": 2}\'')
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd modes")
    parser.add_argument("--ssim-weight", type=float, default=0.0, help="add W x (1 - SSIM) to the loss")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default="fp32,bf16,fp16", help="comma-separated subset to time")
    parser.add_argument("--against", metavar="REV", help="time today's model code against this commit's")
    parser.add_argument("--against-config", metavar="JSON",
                        help="time the model with these MIRNetConfig overrides against the model without")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of --steps steps each (--against, --against-config)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    try:
        _model_overrides(args)
    except ValueError as error:
        parser.error(str(error))
    if (args.against or args.against_config) and args.compile:
        parser.error("--against and --against-config time eager code; they do not take --compile")
    if args.against and args.against_config:
        parser.error("give --against or --against-config, not both")
    if args.against_config:
        try:
            extra = json.loads(args.against_config)
            create_model(args.preset, **{**_model_overrides(args), **extra})
        except (ValueError, TypeError) as error:
            parser.error(f"--against-config: {error}")
    device = torch.device(args.device)
    modes = [Runtime(device, "fp32", False), Runtime(device, "fp32", True), Runtime(device, "bf16", False),
             Runtime(device, "bf16", True)]  # fmt: skip
    if device.type == "cuda":
        modes.append(Runtime(device, "fp16", True))
    modes = [m for m in modes if m.precision in args.precisions.split(",")]
    print(f"hardware: {hardware_name(device)}; torch {torch.__version__}; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; threads {torch.get_num_threads()}")  # fmt: skip
    print(f"model: {args.preset} channels={args.channels or 'preset'} {args.model_config or ''}; "
          f"batch {args.batch} x {args.crop}x{args.crop}; SSIM weight {args.ssim_weight}")  # fmt: skip
    if args.against:
        results = compare_code(args, modes)
    elif args.against_config:
        results = compare_configs(args, modes)
    else:
        results = compare_modes(args, modes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hardware": hardware_name(device), "torch": torch.__version__, "args": vars(args),
                       "results": results}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
