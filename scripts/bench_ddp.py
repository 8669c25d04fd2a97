"""Training speed on a CPU: one process using every thread against DDP processes of one thread each.

    .venv/bin/python scripts/bench_ddp.py [--preset compact] [--processes 2] [--batch 4] [--crop 128]
        [--steps 20] [--rounds 3] [--precision fp32] [--ssim-weight 0.5] [--model-config JSON]

Both train with the same crops per optimizer step (--batch): one process draws them all with
--processes threads, or each of --processes DDP processes (gloo, as `torchrun ... mirnet train`)
draws its share with one thread, and DistributedDataParallel averages their gradients. Each round
times both, in an order that alternates from round to round, each in fresh processes after
--warmup steps; the table gives crops per second, their ratio per round, and the medians. Separate
processes cannot share one clock, so read the ratio of each round, and the hardware line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def worker(args) -> None:
    """Time --steps training steps in this process (and its DDP peers); rank 0 prints crops/s as JSON."""
    import torch.distributed as dist

    from mirnet import create_model
    from mirnet.cli import _model_overrides
    from mirnet.runtime import Runtime, hardware_name
    from mirnet.train import train_step

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    if world > 1:
        dist.init_process_group("gloo")
        rank = dist.get_rank()
    runtime = Runtime(torch.device("cpu"), args.precision, channels_last=True)
    torch.manual_seed(0)  # the same weights on every process, as DDP requires
    model = runtime.prepare(create_model(args.preset, **_model_overrides(args)))
    trained = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1 + rank)  # each process its own crops
    shape = (args.batch // world, 3, args.crop, args.crop)
    low, high = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)

    def steps(n: int) -> float:
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(n):
            train_step(trained, optimizer, low, high, runtime, args.ssim_weight)
        if world > 1:
            dist.barrier()
        return time.perf_counter() - start

    steps(args.warmup)
    seconds = steps(args.steps)
    if rank == 0:
        print(json.dumps({"crops_per_s": args.steps * args.batch / seconds, "hardware": hardware_name(),
                          "threads": torch.get_num_threads(), "world": world}))  # fmt: skip
    if world > 1:
        dist.destroy_process_group()


def launch(args, processes: int) -> dict:
    common = ["--worker", "--preset", args.preset, "--batch", str(args.batch), "--crop", str(args.crop),
              "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", args.precision,
              "--ssim-weight", str(args.ssim_weight)]  # fmt: skip
    if args.channels:
        common += ["--channels", str(args.channels)]
    if args.model_config:
        common += ["--model-config", args.model_config]
    script = os.path.abspath(__file__)
    env = dict(os.environ)
    if processes == 1:
        command = [sys.executable, script, *common, "--threads", str(args.processes)]
        env["OMP_NUM_THREADS"] = str(args.processes)
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), script, *common, "--threads", "1"]  # fmt: skip
        env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"bench_ddp: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="compact")
    parser.add_argument("--channels", type=int)
    parser.add_argument("--model-config", help="more MIRNetConfig overrides as JSON")
    parser.add_argument("--processes", type=int, default=2, help="DDP processes, and the single process's threads")
    parser.add_argument("--batch", type=int, default=4, help="crops per optimizer step, in all")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--ssim-weight", type=float, default=0.5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.processes < 2 or args.batch % args.processes:
        parser.error(f"--batch {args.batch} must split evenly over --processes {args.processes} (2 or more)")

    single, ddp = [], []
    for r in range(args.rounds):
        order = [1, args.processes] if r % 2 == 0 else [args.processes, 1]
        results = {n: launch(args, n) for n in order}
        single.append(results[1]["crops_per_s"])
        ddp.append(results[args.processes]["crops_per_s"])
        if r == 0:
            print(f"hardware: {results[1]['hardware']}; torch {torch.__version__}; CPU capability "
                  f"{torch.backends.cpu.get_cpu_capability()}; {args.precision} + channels_last; {args.preset}, "
                  f"{args.batch} x {args.crop}x{args.crop} crops per step, SSIM weight {args.ssim_weight}\n")
            print(f"| round | 1 process x {args.processes} threads (crops/s) | {args.processes} DDP processes "
                  "x 1 thread (crops/s) | DDP / single |\n| ---: | ---: | ---: | ---: |")
        print(f"| {r + 1} | {single[-1]:.2f} | {ddp[-1]:.2f} | x{ddp[-1] / single[-1]:.2f} |", flush=True)
    ratios = [d / s for d, s in zip(ddp, single)]
    print(f"| median | {statistics.median(single):.2f} | {statistics.median(ddp):.2f} | "
          f"x{statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
