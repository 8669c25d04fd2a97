"""The automatic choice of precision: from the CPU's feature flags, a timing probe only without them."""

import pytest
import torch

from mirnet import runtime


@pytest.fixture(autouse=True)
def _fresh_choice():
    runtime.cpu_bf16_is_fast.cache_clear()
    yield
    runtime.cpu_bf16_is_fast.cache_clear()


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [
    (True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32"),
])  # fmt: skip
def test_cpu_precision_follows_the_native_bf16_flags(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(runtime, "_bf16_probe", lambda: pytest.fail("the flags decide; no probe"))
    assert runtime.select_runtime("cpu").precision == expected
    assert runtime.select_runtime("cpu", "fp32").precision == "fp32"  # an explicit choice stands


@pytest.mark.parametrize("probe", [True, False])
def test_without_the_flags_a_timing_probe_decides(monkeypatch, probe):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.setattr(runtime, "_bf16_probe", lambda: probe)
    assert runtime.select_runtime("cpu").precision == ("bf16" if probe else "fp32")


@pytest.mark.parametrize(("capability", "times", "expected"), [
    ("AVX512", [0, 0.5, 0, 1.0], True),  # bf16 twice as fast: chosen
    ("AVX512", [0, 0.9, 0, 1.0], False),  # less than the 0.8x it asks for
    ("AVX2", [0, 0.1, 0, 1.0], False),  # emulated bf16, never timed
])  # fmt: skip
def test_the_probe_times_bf16_against_fp32(monkeypatch, capability, times, expected):
    import itertools

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(runtime.time, "perf_counter", itertools.cycle(times).__next__)
    assert runtime._bf16_probe() is expected


def test_hardware_name_adds_family_and_model_of_the_first_cpu(monkeypatch):
    import builtins
    import io

    cpuinfo = ("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n\n"
               "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 99\nmodel name\t: other\n")  # fmt: skip
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        return io.StringIO(cpuinfo) if path == "/proc/cpuinfo" else real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert runtime.hardware_name() == "AMD EPYC (family 25, model 17)"
