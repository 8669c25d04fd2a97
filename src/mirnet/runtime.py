"""Where and how to run: device, numeric precision and memory layout, chosen at run time.

CPUs differ: with AVX-512 BF16 or AMX, bf16 autocast with channels_last is several times faster
than fp32; with AVX2 only, bf16 is emulated and an order of magnitude slower. So the choice is never
assumed: it comes from torch's CPU capability, confirmed by a short timing probe.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # "fp32" or "bf16" (autocast) or "fp16" (CUDA autocast)
    channels_last: bool

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> dict:
        return {"device": str(self.device), "hardware": hardware_name(self.device), "precision": self.precision,
                "channels_last": self.channels_last, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "torch": torch.__version__, "threads": torch.get_num_threads()}  # fmt: skip


def hardware_name(device: torch.device | None = None) -> str:
    """The GPU's or CPU's model name, for the records of benchmarks and training runs."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """True when this CPU runs bf16 convolutions natively and faster than fp32 (timed, about a second)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if "AVX512" not in capability and "AMX" not in capability:
        return False  # AVX2 and older: bf16 is emulated
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(4, 32, 64, 64).contiguous(memory_format=torch.channels_last)

    def timed(autocast: bool) -> float:
        best = float("inf")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for _ in range(4):
                start = time.perf_counter()
                conv(x)
                best = min(best, time.perf_counter() - start)
        return best

    return timed(True) < 0.8 * timed(False)


def select_runtime(device: str = "auto", precision: str = "auto", channels_last: bool | None = None) -> Runtime:
    """Resolve 'auto' choices: CUDA if present, bf16 where the hardware makes it faster."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU")
    dev = torch.device(device)
    if precision == "auto":
        if dev.type == "cuda":
            # Measured on an H100 (scripts/bench_train.py): MIRNet's many small kernels make autocast's
            # casts cost more than they save; fp32 (TF32 convolutions) + channels_last is fastest.
            precision = "fp32"
        else:
            precision = "bf16" if cpu_bf16_is_fast() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if precision == "fp16" and dev.type != "cuda":
        raise ValueError("fp16 autocast is for CUDA; on a CPU use bf16 or fp32")
    if channels_last is None:
        # Measured (scripts/bench_train.py): channels_last is faster in every mode that matters here,
        # fp32 on an AVX2 CPU included (x1.44 on the compact presets).
        channels_last = True
    return Runtime(dev, precision, channels_last)
