"""Training speed of each execution mode, as steps/s and as a ratio to plain fp32 in the same process.

    .venv/bin/python scripts/bench_train.py --preset ablation-1x1 --channels 16 [--steps 5] [--compile]
        [--ssim-weight 0.5]

Modes: fp32; fp32 + channels_last; bf16 autocast (+ channels_last); each optionally torch.compile'd;
on CUDA also fp16 autocast. Batch 4 of 128x128 crops (the training default) unless told otherwise;
the loss is Charbonnier, plus W x (1 - SSIM) with --ssim-weight W (the shipped recipe's 0.5).
Machines here are noisy: compare ratios within one run, and read the recorded hardware line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mirnet import create_model
from mirnet.runtime import Runtime, hardware_name
from mirnet.train import train_step


def steps_per_second(runtime: Runtime, args, compiled: bool) -> float:
    torch.manual_seed(0)
    model = runtime.prepare(create_model(args.preset, **({"channels": args.channels} if args.channels else {})))
    trained = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    low, high = torch.rand(args.batch, 3, args.crop, args.crop), torch.rand(args.batch, 3, args.crop, args.crop)
    for _ in range(args.warmup):
        train_step(trained, optimizer, low, high, runtime, args.ssim_weight)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(trained, optimizer, low, high, runtime, args.ssim_weight)  # .item() inside synchronises
    return args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ablation-1x1")
    parser.add_argument("--channels", type=int)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd modes")
    parser.add_argument("--ssim-weight", type=float, default=0.0, help="add W x (1 - SSIM) to the loss")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default="fp32,bf16,fp16", help="comma-separated subset to time")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    modes = [Runtime(device, "fp32", False), Runtime(device, "fp32", True), Runtime(device, "bf16", False),
             Runtime(device, "bf16", True)]  # fmt: skip
    if device.type == "cuda":
        modes.append(Runtime(device, "fp16", True))
    modes = [m for m in modes if m.precision in args.precisions.split(",")]
    print(f"hardware: {hardware_name(device)}; torch {torch.__version__}; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; threads {torch.get_num_threads()}")  # fmt: skip
    print(f"model: {args.preset} channels={args.channels or 'preset'}; "
          f"batch {args.batch} x {args.crop}x{args.crop}; SSIM weight {args.ssim_weight}")  # fmt: skip
    results, reference = [], None
    for compiled in [False, True] if args.compile else [False]:
        for runtime in modes:
            rate = steps_per_second(runtime, args, compiled)
            reference = reference or rate
            name = f"{runtime.precision}{' + channels_last' if runtime.channels_last else ''}{' + compile' if compiled else ''}"
            results.append({"mode": name, "steps_per_s": rate, "ratio_to_fp32": rate / reference})
            print(f"{name:<32} {rate:8.3f} steps/s   x{rate / reference:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hardware": hardware_name(device), "torch": torch.__version__, "args": vars(args),
                       "results": results}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
