"""Where `mirnet enhance` spends its time: torch.profiler's operator table over a few passes on one
image, the shares of the main kinds of operator, and the machine it ran on.

    .venv/bin/python scripts/profile_enhance.py [--model compact|paper|...] [--size 400x600] \
        [--precision auto|fp32|bf16] [--runs 5]

Random weights: time does not depend on them. The image is run twice before profiling (oneDNN picks
its kernels on the first run), then --runs times under the profiler; the shares and the time per
pass are over all of them (a single pass moves by 10-20% on a shared machine).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import profile

from mirnet import create_model
from mirnet.enhance import Enhancer

# Operator-name prefixes -> the kind reported; anything else is "other".
KINDS = {
    "convolution": ("aten::mkldnn_convolution", "aten::_convolution", "aten::conv"),
    "elementwise add / mul": ("aten::add", "aten::mul", "aten::addcmul"),
    "PReLU": ("aten::_prelu_kernel", "aten::prelu"),
    "bilinear upsampling": ("aten::upsample_bilinear2d",),
    "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to"),
    "reflection padding": ("aten::reflection_pad2d",),
    "reductions (sum, mean, max)": ("aten::sum", "aten::mean", "aten::amax"),
    "concatenation": ("aten::cat",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="compact", help="a preset name")
    parser.add_argument("--size", default="400x600", help="HxW")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--runs", type=int, default=5, help="passes profiled")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()

    height, width = map(int, args.size.split("x"))
    enhancer = Enhancer(create_model(args.model), device="cpu", precision=args.precision)
    x = torch.rand(1, 3, height, width)
    for _ in range(2):
        enhancer.enhance_tensor(x)
    with profile() as prof:
        for _ in range(args.runs):
            enhancer.enhance_tensor(x)

    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares: dict[str, float] = defaultdict(float)
    for event in events:
        kind = next((k for k, names in KINDS.items() if event.key.startswith(names)), "other")
        shares[kind] += event.self_cpu_time_total / total
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    runtime = enhancer.runtime.describe()
    print(f"{args.model} at {width}x{height}; {runtime['hardware']}, {runtime['threads']} threads, "
          f"{runtime['precision']}{' + channels_last' if runtime['channels_last'] else ''} "
          f"(CPU capability {runtime['cpu_capability']}), torch {runtime['torch']}; "
          f"{total / 1e6 / args.runs:.3f} s of operator time (self CPU) per pass, "
          f"{args.runs} passes")  # fmt: skip
    for kind, share in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"  {kind:28s} {share:6.1%}")


if __name__ == "__main__":
    main()
