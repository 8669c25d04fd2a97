"""What each of mirnet.cpu_backward's replacements saves, operation by operation, in one process.

    .venv/bin/python scripts/bench_cpu_backward.py [--rounds 7] [--repeats 10]

Each case times a forward and backward pass (or the one operation named) on the compact preset's
stage-1 shapes (4 x 128x128 crops: 16 channels at full resolution, 32 at half), bf16 and fp32,
channels_last, as torch runs it plainly and as mirnet runs it while training on a CPU in bf16.
The two alternate round by round; the table gives the median time of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mirnet import cpu_backward
from mirnet.model import BlurPool, PReLU
from mirnet.runtime import hardware_name

CL = torch.channels_last


def milliseconds(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def forward_backward(module_or_fn, x: torch.Tensor, grad: torch.Tensor):
    def step():
        x.grad = None
        module_or_fn(x).backward(grad)

    return step


def cases(dtype: torch.dtype, channels: int, size: int):
    """(name, plain, mirnet's) pairs of callables."""
    shape = (4, channels, size, size)
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=CL).requires_grad_()
    grad = torch.randn(shape, dtype=dtype).contiguous(memory_format=CL)
    prelu = PReLU().to(dtype)
    plain_prelu = lambda t: torch.prelu(t, prelu.weight)  # noqa: E731
    fast_prelu = lambda t: cpu_backward.prelu(t, prelu.weight)  # noqa: E731
    plain_blur, training_blur = BlurPool(channels).to(dtype).eval(), BlurPool(channels).to(dtype).train()
    half = torch.randn(4, channels, size // 2, size // 2, dtype=dtype).contiguous(memory_format=CL)
    # The gradients a channels_last tensor collects: a matching one plus a broadcast or contiguous one.
    into = torch.randn(shape, dtype=dtype).contiguous(memory_format=CL)
    pooled_grad = torch.randn(4, channels, 1, 1, dtype=dtype).expand(shape)
    contiguous_grad = torch.randn(shape, dtype=dtype)
    return [
        ("PReLU forward + backward",
         forward_backward(plain_prelu, x, grad), forward_backward(fast_prelu, x, grad)),
        ("blur pool forward + backward (bf16 conv / fp32 conv)",
         forward_backward(plain_blur, x, half), forward_backward(training_blur, x, half)),
        ("add a pooled (broadcast) gradient / copy it into the layout, then add",
         lambda: into.add_(pooled_grad), lambda: into.add_(pooled_grad.contiguous(memory_format=CL))),
        ("add a contiguous gradient / copy it into the layout, then add",
         lambda: into.add_(contiguous_grad), lambda: into.add_(contiguous_grad.contiguous(memory_format=CL))),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10, help="calls per timing")
    args = parser.parse_args()
    print(f"hardware: {hardware_name(torch.device('cpu'))}; torch {torch.__version__}; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; threads {torch.get_num_threads()}")  # fmt: skip
    print(f"median of {args.rounds} alternating rounds of {args.repeats} calls; channels_last\n")
    print("| case | dtype | shape | plain (ms) | mirnet (ms) | speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for dtype in (torch.bfloat16, torch.float32):
        for channels, size in ((16, 128), (32, 64)):
            for name, plain, fast in cases(dtype, channels, size):
                times = {"plain": [], "fast": []}
                for fn in (plain, fast):  # warm-up: oneDNN picks its kernels on the first call
                    fn()
                for round_ in range(args.rounds):
                    for key in ("plain", "fast") if round_ % 2 == 0 else ("fast", "plain"):
                        times[key].append(milliseconds(plain if key == "plain" else fast, args.repeats))
                before, after = statistics.median(times["plain"]), statistics.median(times["fast"])
                cells = [name, str(dtype)[6:], f"4x{channels}x{size}x{size}", f"{before:.3f}", f"{after:.3f}",
                         f"x{before / after:.2f}"]  # fmt: skip
                print(f"| {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
