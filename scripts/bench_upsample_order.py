"""The residual upsampling's bypass, as shipped (bilinear x2, then the 1x1 convolution, the paper's
order) against the same two linear maps commuted (the 1x1 convolution at the low resolution, then
bilinear x2 on half the channels): the same function, fewer MACs. Timed in one process, interleaved.

    .venv/bin/python scripts/bench_upsample_order.py [--models compact,paper] [--rounds 3] [--precision auto]

For each model (random weights: speed does not depend on them) it prints GMACs per 600x400 image in
both orders, the largest difference between the two outputs, and the Enhancer's time per 600x400
image in both orders as medians over interleaved rounds. The commuted order was measured, not
adopted (README, Speed and memory).
"""

from __future__ import annotations

import argparse
import statistics
from unittest import mock

import torch
import torch.nn.functional as F

from mirnet import count_macs, create_model
from mirnet.enhance import Enhancer
from mirnet.model import ResidualUpsample
from mirnet.runtime import hardware_name, seconds_per_call


def commuted(self: ResidualUpsample, x: torch.Tensor) -> torch.Tensor:
    """ResidualUpsample.forward with the bypass's 1x1 convolution before its interpolation: both are
    linear, the interpolation acts per channel and its weights sum to 1, so the bias commutes too."""
    bypass = F.interpolate(self.bottom[1](x), scale_factor=2, mode="bilinear", align_corners=False)
    return self.top(x) + bypass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="compact,paper")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    x = torch.rand(1, 3, 400, 600, generator=torch.Generator().manual_seed(0))
    print(f"{hardware_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"600x400, medians of {args.rounds} interleaved rounds")  # fmt: skip
    print("| model | precision | GMACs: shipped / commuted | largest output difference "
          "| shipped (s) | commuted (s) | shipped / commuted |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    swap = mock.patch.object(ResidualUpsample, "forward", commuted)
    for name in args.models.split(","):
        model = create_model(name).eval()
        with swap:
            commuted_macs = count_macs(model, 400, 600)
        macs = f"{count_macs(model, 400, 600) / 1e9:.1f} / {commuted_macs / 1e9:.1f}"
        enhancer = Enhancer(model, device="cpu", precision=args.precision)
        shipped_out = enhancer.enhance_tensor(x)  # also pays oneDNN's first choice of kernels
        with swap:
            commuted_out = enhancer.enhance_tensor(x)
        difference = float((shipped_out - commuted_out).abs().max())
        shipped, reordered = [], []
        for _ in range(args.rounds):
            shipped.append(seconds_per_call(lambda: enhancer.enhance_tensor(x)))
            with swap:
                reordered.append(seconds_per_call(lambda: enhancer.enhance_tensor(x)))
        ratio = statistics.median(s / r for s, r in zip(shipped, reordered))
        print(f"| {name} | {enhancer.runtime.precision} | {macs} | "
              f"{difference:.1e} | {statistics.median(shipped):.3f} | {statistics.median(reordered):.3f} | "
              f"x{ratio:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
