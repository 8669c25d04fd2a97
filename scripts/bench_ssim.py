"""SSIM's Gaussian filtering, as shipped (the images as channels of one depthwise convolution) against
the reference way (a batch of one-channel images), timed in one process, interleaved.

    .venv/bin/python scripts/bench_ssim.py [--rounds 5]

Two uses: the SSIM loss of a training step (4 x 3 x 128 x 128 crops, float32, forward and backward)
and the SSIM metric of a 600x400 image (float64, forward). Prints each one's time per call and
the ratio of the reference to the shipped filtering, as medians over the rounds, and the largest
difference between the two's results (the loss's gradient, the metric's value).
"""

from __future__ import annotations

import argparse
import statistics
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from mirnet import metrics
from mirnet.runtime import hardware_name, seconds_per_call
from mirnet.train import ssim_loss


def one_channel_blur(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The reference: two 1-D passes over (N, 1, H, W) as N one-channel images."""
    t = torch.arange(size, dtype=x.dtype) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    return F.conv2d(F.conv2d(x, g.view(1, 1, size, 1)), g.view(1, 1, 1, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    output = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    image = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    noisy = np.clip(image.astype(int) + rng.integers(-30, 30, image.shape), 0, 255).astype(np.uint8)

    def loss_step():
        output.grad = None
        ssim_loss(output, target).backward()
        return output.grad

    uses = {"SSIM loss, 4 x 3 x 128x128 float32, forward + backward": (loss_step, 20),
            "SSIM metric, 600x400 float64": (lambda: metrics.ssim(image, noisy), 3)}  # fmt: skip
    print(f"{hardware_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"medians of {args.rounds} interleaved rounds")  # fmt: skip
    print("| use | shipped (ms) | one-channel reference (ms) | reference / shipped | largest difference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (work, calls) in uses.items():
        shipped_value = work()
        with mock.patch.object(metrics, "_gaussian_blur", one_channel_blur):
            reference_value = work()
        difference = float(torch.as_tensor(shipped_value).sub(torch.as_tensor(reference_value)).abs().max())
        shipped, reference = [], []
        for _ in range(args.rounds):
            shipped.append(seconds_per_call(work, calls))
            with mock.patch.object(metrics, "_gaussian_blur", one_channel_blur):
                reference.append(seconds_per_call(work, calls))
        ratios = [r / s for r, s in zip(reference, shipped)]
        times = f"{1000 * statistics.median(shipped):.1f} | {1000 * statistics.median(reference):.1f}"
        print(f"| {name} | {times} | x{statistics.median(ratios):.1f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
