"""Where and how to run: device, numeric precision and memory layout, chosen at run time.

CPUs differ: with AVX-512 BF16 or AMX, bf16 autocast with channels_last is faster than fp32 (2x
for the paper preset on an AVX-512 BF16 EPYC); with AVX2 only, bf16 is emulated and an order of
magnitude slower. So the choice is never assumed: it comes from the CPU's feature flags as torch
reads them (a timing probe where it cannot).
"""

from __future__ import annotations

import contextlib
import copy
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

    def prepare_for_inference(self, model: torch.nn.Module, keep_original: bool = True) -> torch.nn.Module:
        """prepare(), with the weights stored in the autocast dtype when autocasting; in a copy when
        keep_original, so that a caller's model keeps its device, dtype and layout.

        Autocast casts every weight of every low-precision op on every call; weights already in
        that dtype are used as they are, with the same values, so the outputs do not change.
        """
        if keep_original:  # .to() converts a module in place
            model = copy.deepcopy(model)
        if self.precision == "fp32":
            return self.prepare(model)
        return self.prepare(model.to(torch.bfloat16 if self.precision == "bf16" else torch.float16))

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
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():  # the end of the first processor's block
                    break
                fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    # Virtual machines may report only "AMD EPYC"; the family and model tell such CPUs apart
    # (two of them here trained the same model at 2x different speeds).
    if "cpu family" in fields and "model" in fields:
        return f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
    return fields["model name"]


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """True when this CPU computes in bf16 natively (AVX-512 BF16 or AMX), where bf16 autocast is faster.

    Read from the CPU's feature flags (torch's cpuinfo). A timing probe is the fallback where torch
    does not expose them: it was the only test before, and on a busy 2-core machine it picked fp32 at
    random (once in a few processes when idle, 15 of 15 while a training run used both cores),
    which made `mirnet enhance` 2x slower there.
    """
    has_avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if has_avx512_bf16 is not None and has_amx is not None:
        return bool(has_avx512_bf16() or has_amx())
    return _bf16_probe()


def seconds_per_call(work, calls: int = 1) -> float:
    """Wall-clock seconds that `work()` takes, averaged over `calls` calls (for the benchmark scripts)."""
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls


def _bf16_probe() -> bool:
    """True when a bf16 convolution runs in under 0.8x the time of fp32 (timed, a fraction of a second)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if "AVX512" not in capability and "AMX" not in capability:
        return False  # AVX2 and older: bf16 is emulated
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.rand(4, 32, 64, 64).contiguous(memory_format=torch.channels_last)
    best = {True: float("inf"), False: float("inf")}
    # Interleaved, so that a burst of load from elsewhere slows both precisions alike.
    with torch.no_grad():
        for _ in range(12):
            for autocast in (True, False):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    start = time.perf_counter()
                    conv(x)
                    best[autocast] = min(best[autocast], time.perf_counter() - start)
    return best[True] < 0.8 * best[False]


def select_runtime(device: str = "auto", precision: str = "auto", channels_last: bool | None = None) -> Runtime:
    """Resolve 'auto' choices: CUDA if present, bf16 where the hardware makes it faster."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU")
    if not (device == "cpu" or device.startswith("cuda")):  # what this project runs on, said in one line
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
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
