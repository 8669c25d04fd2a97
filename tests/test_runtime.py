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


def test_the_probe_runs_and_answers():
    assert isinstance(runtime._bf16_probe(), bool)


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
