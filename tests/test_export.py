"""Deployment: the converter-friendly rewrite, ONNX, TFLite float32/int8, TFLite Micro and the sketch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mirnet
from mirnet.deploy import PhaseUpsample, deployable


def tiny(seed: int = 0, **overrides) -> mirnet.MIRNet:
    """A tiny random model whose PReLU slopes cover all three rewrites (0..1, above 1, negative)."""
    torch.manual_seed(seed)
    config = dict(channels=8, num_rrg=1, num_mrb=1, num_streams=2) | overrides
    model = mirnet.create_model("paper", **config).eval()
    slopes = iter([0.2, 1.4, -0.3] * 50)
    for name, p in model.named_parameters():
        if p.numel() == 1:
            p.data.fill_(next(slopes))
    return model


def torch_nhwc(model, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = model(torch.from_numpy(image).permute(2, 0, 1)[None]).clamp(0, 1)
    return y[0].permute(1, 2, 0).numpy()


def dark_tiles(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((height, width, 3)) * 0.3).astype(np.float32) for _ in range(count)]


# ---------------------------------------------------------------- the rewrite (no extra needed)


@pytest.mark.parametrize("overrides", [{}, {"num_streams": 3, "share_weights": False}, {"num_rrg": 2, "daus_per_stream": 3}])
def test_deployable_computes_the_same_function(overrides):
    model = tiny(**overrides)
    x = torch.rand(1, 3, 36, 44)
    with torch.no_grad():
        assert (deployable(model)(x) - model(x).clamp(0, 1)).abs().max() < 1e-5


def test_deployable_keeps_shared_modules_shared():
    model = tiny()
    net = deployable(model).net
    assert net.rrgs[0].mrbs[0].daus[0][0].act is net.rrgs[0].mrbs[0].daus[1][0].act  # one PReLU everywhere
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in net.parameters())  # phases: 4x2x2 vs 3x3


def test_phase_upsample_equals_the_transposed_convolution():
    transposed = torch.nn.ConvTranspose2d(5, 3, 3, stride=2, padding=1, output_padding=1, bias=False)
    x = torch.randn(2, 5, 7, 6)
    with torch.no_grad():
        assert (PhaseUpsample(transposed)(x) - transposed(x)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="rewrites"):
        PhaseUpsample(torch.nn.ConvTranspose2d(5, 3, 2, stride=2, bias=False))


# ---------------------------------------------------------------- ONNX

onnx_needed = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="needs the export extra",
)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from mirnet.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(tiny(num_streams=3), path)
    return path


@onnx_needed
@pytest.mark.parametrize("size", [(32, 48), (37, 53), (64, 21)])
def test_onnx_matches_torch_at_any_size(onnx_file, size):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 3, *size), dtype=np.float32)
    y = session.run(None, {"low": x})[0]
    with torch.no_grad():
        expected = tiny(num_streams=3)(torch.from_numpy(x)).clamp(0, 1).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < 1e-4


@onnx_needed
def test_onnx_carries_its_configuration(onnx_file):
    import onnx

    proto = onnx.load(str(onnx_file))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["mirnet_config"])["num_streams"] == 3
    # Without the exporter's per-node debug records: its stack traces named this machine's folders.
    assert not any(node.metadata_props or node.doc_string for node in proto.graph.node)
    assert b"test_export.py" not in onnx_file.read_bytes()


@onnx_needed
def test_enhance_with_the_onnx_backend(onnx_file, tmp_path):
    rgb = (np.random.default_rng(2).random((40, 52, 3)) * 60).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "dark.png")
    result = subprocess.run([sys.executable, "-m", "mirnet", "enhance", str(tmp_path / "dark.png"), "-o",
                             str(tmp_path / "out"), "--backend", "onnx", "--weights", str(onnx_file), "-q"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "out" / "dark.png"))
    expected = np.round(torch_nhwc(tiny(num_streams=3), rgb.astype(np.float32) / 255) * 255)
    assert np.abs(out.astype(int) - expected).max() <= 1


@onnx_needed
def test_onnx_backend_refuses_a_missing_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mirnet", "enhance", "x.png", "--backend", "onnx",
                             "--weights", str(tmp_path / "nope.onnx")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.onnx: no such file" in result.stderr


def test_onnx_backend_refuses_a_tile_size_device_or_precision_before_any_work(tmp_path, capsys):
    from mirnet.cli import main

    Image.fromarray(np.full((40, 52, 3), 20, np.uint8)).save(tmp_path / "dark.png")
    assert main(["enhance", str(tmp_path / "dark.png"), "-o", str(tmp_path / "out"), "--backend", "onnx",
                 "--tile", "64", "-q"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err == "mirnet: error: --tile 64: the onnx backend enhances whole images; leave --tile out\n"
    for option in (["--device", "cuda"], ["--precision", "bf16"]):  # refused, not ignored
        assert main(["enhance", str(tmp_path / "dark.png"), "-o", str(tmp_path / "out"), "--backend", "onnx",
                     *option, "-q"]) == 2  # fmt: skip
        assert f"--backend onnx runs float32 on the CPU (onnxruntime); {' '.join(option)} is for the torch backend" \
            in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- TFLite and TFLite Micro

tflite_needed = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("tensorflow", "ai_edge_litert", "tflite_micro")),
    reason="needs the export extra",
)


@pytest.fixture(scope="module")
def tflite_models():
    from mirnet.export import convert_tflite

    model = tiny()
    return model, convert_tflite(model, 32, 32), convert_tflite(model, 32, 32, dark_tiles(8, 32, 32))


@tflite_needed
def test_tflite_float32_matches_torch(tflite_models):
    from mirnet.exported import TFLiteModel

    model, flat, _ = tflite_models
    runner = TFLiteModel(flat)
    assert runner.tile == (32, 32) and runner.input["dtype"] == np.float32
    x = dark_tiles(1, 32, 32, seed=5)[0]
    assert np.abs(runner(x) - torch_nhwc(model, x)).max() < 1e-4


@tflite_needed
def test_tflite_int8_is_full_integer_and_close_to_float(tflite_models):
    from mirnet.export import tflite_ops
    from mirnet.exported import TFLiteModel

    model, _, quantized = tflite_models
    runner = TFLiteModel(quantized)
    assert runner.input["dtype"] == np.int8 and runner.output["dtype"] == np.int8
    assert not {"QUANTIZE", "DEQUANTIZE", "PRELU", "REDUCE_MAX", "EXP"} & set(tflite_ops(quantized))
    x = dark_tiles(1, 32, 32, seed=5)[0]
    error = np.abs(runner(x) - torch_nhwc(model, x))
    assert error.mean() < 0.01 and error.max() < 0.08
    # Calibrated on dark tiles only, input and output still span [0, 1]: 8-bit pixels one to one.
    for end in (runner.input, runner.output):
        assert (end["scale"], end["zero"]) == (pytest.approx(1 / 255), -128)
    bright = x.copy()
    bright[8:16, 8:16] = 0.9  # far above the calibration tiles, which would have clipped it
    assert np.abs(runner(bright) - torch_nhwc(model, bright)).mean() < 0.02


@tflite_needed
def test_micro_arena_is_the_smallest_that_allocates(tflite_models):
    from mirnet.exported import MicroModel, TFLiteModel, arena_size

    _, _, quantized = tflite_models
    arena = arena_size(quantized)
    with pytest.raises(RuntimeError):
        MicroModel(quantized, arena - 1024)
    micro = MicroModel(quantized, arena)
    x = dark_tiles(1, 32, 32, seed=6)[0]
    # TFLM's reference kernels and LiteRT's optimized ones round a few steps differently.
    assert np.abs(micro(x) - TFLiteModel(quantized)(x)).max() < 0.03


class Echo:
    """A fake tile model: returns its tile brightened, so every output pixel has one right value."""

    tile = (16, 24)

    def __call__(self, tile):
        return np.clip(tile * 2, 0, 1)


def test_tiled_blending_gives_each_pixel_its_value():
    from mirnet.exported import run_tiled

    image = np.random.default_rng(3).random((50, 61, 3)).astype(np.float32) * 0.5
    assert np.abs(run_tiled(Echo(), image, overlap=4) - image * 2).max() < 1e-5
    with pytest.raises(ValueError, match="smaller than"):
        run_tiled(Echo(), image[:10], overlap=4)


def test_tiled_blending_ramps_each_new_tile_over_the_old():
    from mirnet.exported import run_tiled

    class TwoTiles:  # answers 0.2 for its first tile and 0.6 after, so the overlap shows the ramp
        tile = (16, 24)
        calls = 0

        def __call__(self, tile):
            self.calls += 1
            return np.full_like(tile, 0.2 if self.calls == 1 else 0.6)

    row = run_tiled(TwoTiles(), np.zeros((16, 40, 3), np.float32), overlap=4)[0, :, 0]
    w = np.arange(1, 5) / 5  # tiles at 0 and 16: the second rises over its first 4 columns
    expected = np.concatenate([np.full(16, 0.2), 0.2 * (1 - w) + 0.6 * w, np.full(20, 0.6)])
    assert np.allclose(row, expected, atol=1e-6)


@tflite_needed
def test_export_micro_writes_model_header_sketch_and_report(tmp_path):
    from mirnet.export import export_micro
    from mirnet.exported import TFLiteModel

    model = tiny()
    report = export_micro(model, tmp_path / "micro", dark_tiles(4, 32, 32), name="tiny")
    flat = (tmp_path / "micro" / "tiny_int8.tflite").read_bytes()
    assert TFLiteModel(flat).tile == (32, 32) and len(flat) == report["model_bytes"]
    header = (tmp_path / "micro" / "mirnet_micro" / "mirnet_model_data.h").read_text()
    assert f"g_mirnet_model_len = {len(flat)};" in header and header.count("0x") == len(flat)
    sketch = (tmp_path / "micro" / "mirnet_micro" / "mirnet_micro.ino").read_text()
    assert f"kArenaSize = {report['arena_bytes'] + 4096};" in sketch and "@" not in sketch
    tiles_header = (tmp_path / "micro" / "mirnet_micro" / "mirnet_tiles.h").read_text()
    assert "@" not in tiles_header and "kTileH = 32, kTileW = 32, kOverlap = 8;" in tiles_header
    assert sketch.count("resolver.Add") == len(report["ops"]) == len(set(report["ops"]))
    saved = json.loads((tmp_path / "micro" / "micro.json").read_text())
    assert saved["tiles_per_qcif_frame"] == 6 * 7 and saved["macs_per_tile"] == mirnet.count_macs(model, 32, 32)
    arena = report["arena_bytes"] + 4096
    ram = arena + 2 * 144 * 176 + 2 * (32 * 176 + 32 * 32)  # the RGB565 frame, the overlaps kept
    assert saved["ram_bytes"] == {"arena": arena, "frame_rgb565": 2 * 144 * 176, "overlap_keep": 2 * (32 * 176 + 32 * 32)}
    fits = arena <= 160 * 1024 and ram <= 200 * 1024 and report["model_bytes"] <= 300 * 1024
    assert saved["fits_nano_33_ble_sense"] is fits


@tflite_needed
def test_export_cli(tmp_path):
    from mirnet.exported import TFLiteModel

    weights = tmp_path / "tiny.safetensors"
    mirnet.save_weights(tiny(), weights)
    out = tmp_path / "tiny.tflite"
    run = [sys.executable, "-m", "mirnet", "export"]
    result = subprocess.run(run + ["tflite", "--weights", str(weights), "-o", str(out), "--height", "32", "--width", "40"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "float32" in result.stdout and TFLiteModel(out.read_bytes()).tile == (32, 40)
    result = subprocess.run(run + ["tflite", "--weights", str(weights), "-o", str(out), "--height", "32"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and result.stderr == f"mirnet: error: {out}: exists; --overwrite replaces it\n"
    result = subprocess.run(run + ["tflite", "--weights", str(weights), "-o", str(out), "--int8", "--calibration",
                                   str(tmp_path / "missing"), "--overwrite"], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "missing: no such folder of images to calibrate" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    result = subprocess.run(run + ["tflite", "--weights", str(weights), "-o", str(out), "--height", "31", "--overwrite"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "multiple of 2" in result.stderr


def _unpack565(p: np.ndarray) -> np.ndarray:
    r, g, b = (p >> 11) & 0x1F, (p >> 5) & 0x3F, p & 0x1F
    return np.stack([r * 255 / 31, g * 255 / 63, b * 255 / 31], axis=-1).astype(np.float32)


def _pack565_units(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb * np.array([31, 63, 31]) / 255).clip(0, [31, 63, 31])


@pytest.mark.skipif(__import__("shutil").which("g++") is None, reason="needs g++")
def test_sketch_tiling_matches_python_on_a_camera_frame(tmp_path):
    """The sketch's in-place tiling (mirnet_tiles.h), compiled for the host with a fake int8 model
    that doubles its tile, gives what run_tiled gives: every tile reads original pixels."""
    from importlib.resources import files

    from mirnet.exported import run_tiled

    header = files("mirnet").joinpath("micro/mirnet_tiles.h.in").read_text()
    for key, value in {"@TILE_H@": "32", "@TILE_W@": "32", "@OVERLAP@": "8"}.items():
        header = header.replace(key, value)
    (tmp_path / "mirnet_tiles.h").write_text(header)
    (tmp_path / "host.cc").write_text("""
#include <cstdio>
#include "mirnet_tiles.h"
static uint16_t frame[176 * 144];
static int8_t in[32 * 32 * 3], out[32 * 32 * 3];
int main() {
  if (fread(frame, 2, 176 * 144, stdin) != 176 * 144) return 1;
  // input: q = v - 128 for v in 0..255; output: the same q read with twice the scale (a doubling model)
  const mirnet::TileIO io{in, out, 1.0f / 255.0f, 2.0f / 255.0f, -128, -128};
  if (!mirnet::enhance_frame(frame, io, [] { memcpy(out, in, sizeof(in)); return true; })) return 2;
  fwrite(frame, 2, 176 * 144, stdout);
}
""")
    subprocess.run(["g++", "-O1", "-std=c++17", "-o", str(tmp_path / "host"), str(tmp_path / "host.cc")], check=True)
    rng = np.random.default_rng(4)
    camera = (rng.integers(0, 1 << 16, size=(144, 176))).astype(np.uint16)
    result = subprocess.run([str(tmp_path / "host")], input=camera.tobytes(), capture_output=True, check=True)
    device = np.frombuffer(result.stdout, np.uint16).reshape(144, 176)

    class Double:
        tile = (32, 32)

        def __call__(self, tile):
            return np.clip(np.round(tile * 255) * 2 / 255, 0, 1)  # the sketch rounds to 8 bits first

    expected = _pack565_units(run_tiled(Double(), _unpack565(camera) / 255, overlap=8) * 255)
    got = _pack565_units(_unpack565(device))
    # Blending in 5/6-bit colour rounds each step; reading an already enhanced pixel would double it again.
    assert np.abs(got - expected).max() <= 1
    assert (got == expected).mean() > 0.95


# ---------------------------------------------------------------- guards


@onnx_needed
def test_onnx_backend_takes_tiny_images_and_reports_a_failing_one(onnx_file, tmp_path):
    from mirnet.enhance import InferenceError, enhance_files
    from mirnet.exported import OnnxEnhancer

    enhancer = OnnxEnhancer(onnx_file)
    for size in ((1, 1), (2, 3), (5, 2)):  # smaller than the 4-pixel multiple: edge copies, as torch
        x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = tiny(num_streams=3)(x).clamp(0, 1)
        assert (enhancer.enhance_tensor(x) - expected).abs().max() < 1e-4

    class Failing(OnnxEnhancer):
        def _forward(self, x):
            if x.shape[-1] == 7:
                raise InferenceError("onnxruntime failed (a stand-in failure)")
            return super()._forward(x)

    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(tmp_path / "bad.png")
    Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(tmp_path / "good.png")
    summary = enhance_files([tmp_path / "bad.png", tmp_path / "good.png"], tmp_path / "out", Failing(onnx_file),
                            progress=False)  # fmt: skip
    assert summary.done == 1 and summary.errors == [f"{tmp_path / 'bad.png'}: onnxruntime failed (a stand-in failure)"]


@onnx_needed
def test_onnx_enhancer_runs_large_arrays_whole_by_default(onnx_file):
    from mirnet.enhance import AUTO_TILE_PIXELS, enhance
    from mirnet.exported import OnnxEnhancer

    class Recording(OnnxEnhancer):
        def _forward(self, x):
            self.shapes.append(tuple(x.shape[-2:]))
            return x.clone()  # the identity: this test is about tiling, not the network

    enhancer = Recording(onnx_file)
    array = np.random.default_rng(0).integers(0, 255, (1000, 1100, 3), dtype=np.uint8)
    assert array.shape[0] * array.shape[1] > AUTO_TILE_PIXELS  # the torch backend would tile it
    for image in (array, array.astype(np.float32) / 255, array[..., 0]):  # the array paths of enhance()
        enhancer.shapes = []
        assert enhance(image, enhancer).shape == image.shape
        assert enhancer.shapes == [(1000, 1100)]


@onnx_needed
def test_the_onnx_cache_replaces_a_damaged_file_and_is_keyed_by_the_exporter(tmp_path, monkeypatch):
    import mirnet.export
    from mirnet.exported import onnx_cache_path, onnx_enhancer
    from mirnet.weights import save_weights

    monkeypatch.setenv("MIRNET_HOME", str(tmp_path / "home"))
    model = tiny(num_streams=2)
    save_weights(model, tmp_path / "tiny.safetensors")
    cached = onnx_cache_path(model)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half an onnx file")  # as a crash or a full disk could leave it
    enhancer = onnx_enhancer(str(tmp_path / "tiny.safetensors"))
    assert enhancer.session is not None and cached.read_bytes().startswith(b"\x08")  # a protobuf: re-exported
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (enhancer.enhance_tensor(x) - model(x).clamp(0, 1)).abs().max() < 1e-4
    # Another exporter or model code (here: read as other bytes) names another file, not the old one.
    real = Path.read_bytes
    for module in (mirnet.export, sys.modules["mirnet.model"]):
        with monkeypatch.context() as patch:
            changed = Path(module.__file__)
            patch.setattr(Path, "read_bytes", lambda p, changed=changed: real(p) + b"#" if p == changed else real(p))
            assert onnx_cache_path(model) != cached
    assert onnx_cache_path(model) == cached


def test_micro_resolver_methods_are_tflite_micros_names():
    from mirnet.export import _resolver_method

    # As MicroMutableOpResolver spells them (tensorflow/lite/micro/micro_mutable_op_resolver.h).
    expected = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "AVERAGE_POOL_2D": "AddAveragePool2D",
                "MAX_POOL_2D": "AddMaxPool2D", "PADV2": "AddPadV2", "RESIZE_BILINEAR": "AddResizeBilinear",
                "DEPTH_TO_SPACE": "AddDepthToSpace", "STRIDED_SLICE": "AddStridedSlice", "MIRROR_PAD": "AddMirrorPad",
                "L2_NORMALIZATION": "AddL2Normalization", "LOGISTIC": "AddLogistic"}  # fmt: skip
    assert {op: _resolver_method(op) for op in expected} == expected


@onnx_needed
def test_onnx_enhancer_refuses_a_tile_size_in_the_python_api_before_any_work(onnx_file, tmp_path):
    from mirnet.enhance import enhance_files
    from mirnet.exported import OnnxEnhancer

    Image.fromarray(np.zeros((70, 80, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"^tile=64: the onnx backend enhances whole images; pass tile=None$"):
        enhance_files([tmp_path / "a.png"], tmp_path / "out", OnnxEnhancer(onnx_file), tile=64, progress=False)
    with pytest.raises(ValueError, match=r"^tile=64: the onnx backend enhances whole images"):  # NumPy's too
        enhance_files([tmp_path / "a.png"], tmp_path / "out", OnnxEnhancer(onnx_file), tile=np.int64(64),
                      progress=False)  # fmt: skip
    for tile in (64.0, True, np.bool_(True)):
        with pytest.raises(ValueError, match=r"^tile must be a size in pixels, 'auto' or None, got "):
            enhance_files([tmp_path / "a.png"], tmp_path / "out", OnnxEnhancer(onnx_file), tile=tile, progress=False)
    assert not (tmp_path / "out").exists()
    summary = enhance_files([tmp_path / "a.png"], tmp_path / "out", OnnxEnhancer(onnx_file), tile=None,
                            progress=False)  # fmt: skip
    assert summary.done == 1 and Image.open(summary.outputs[0]).size == (80, 70)


@onnx_needed
def test_onnx_backend_failures_are_one_line_even_without_a_message(onnx_file):
    from mirnet.enhance import InferenceError
    from mirnet.errors import first_line
    from mirnet.exported import OnnxEnhancer

    assert first_line(RuntimeError("\n  [ONNXRuntimeError] bad shape\nat node 3")) == "[ONNXRuntimeError] bad shape"

    class Session:  # onnxruntime raising an exception with an empty message (an IndexError before)
        def run(self, *args):
            raise RuntimeError("  \n")

    enhancer = OnnxEnhancer(onnx_file)
    enhancer.session = Session()
    with pytest.raises(InferenceError, match=r"^onnxruntime failed \(RuntimeError\)$"):
        enhancer.enhance_tensor(torch.rand(1, 3, 8, 8))


def test_export_refuses_bad_options_before_any_work(tmp_path, capsys):
    from mirnet.cli import main

    weights = tmp_path / "w.safetensors"
    mirnet.save_weights(tiny(), weights)
    before = weights.read_bytes()
    for args, message in (
        (["onnx", "--model", str(weights), "-o", str(weights)], "refusing to overwrite the input weights"),
        (["tflite", "--weights", str(weights), "-o", str(tmp_path / "m.tflite"), "--calibration", str(tmp_path)],
         "add --int8"),
        (["tflite", "--int8", "--weights", str(weights), "-o", str(tmp_path / "m.tflite"), "--calibration-count", "0"],
         "--calibration-count must be at least 1"),
    ):  # fmt: skip
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert weights.read_bytes() == before


def test_export_refuses_what_it_would_ignore_or_could_not_write_before_converting(tmp_path, capsys):
    from mirnet.cli import main

    weights = tmp_path / "w.safetensors"
    mirnet.save_weights(tiny(), weights)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "old" / "mirnet_micro").mkdir(parents=True)
    (tmp_path / "old" / "mirnet_micro" / "mirnet_micro.ino").write_text("// edited by hand")
    (tmp_path / "tiles" / "mirnet_micro").mkdir(parents=True)  # any file of the export, not only the .ino
    (tmp_path / "tiles" / "mirnet_micro" / "mirnet_tiles.h").write_text("// edited by hand")
    w = ["--weights", str(weights)]
    for args, message in (
        (["onnx", *w, "--int8", "-o", str(tmp_path / "m.onnx")], "--int8: not an option of the onnx export"),
        (["onnx", *w, "--height", "32", "-o", str(tmp_path / "m.onnx")], "--height: not an option of the onnx export"),
        (["tflite", *w, "--tile", "32", "-o", str(tmp_path / "m.tflite")], "--tile: not an option of the tflite export"),
        (["tflite", *w, "--tile", "0", "--overlap", "0", "-o", str(tmp_path / "m.tflite")],  # 0 == False
         "--tile, --overlap: not an option of the tflite export"),
        (["onnx", *w, "--calibration-count", "8", "--json", "-o", str(tmp_path / "m.onnx")],
         "--calibration-count, --json: not an option of the onnx export"),
        (["tflite", *w, "--calibration-count", "8", "-o", str(tmp_path / "m.tflite")], "--calibration-count sets int8"),
        (["micro", *w, "--tile", "0", "-o", str(tmp_path / "t0")], "got tile 0, overlap 8"),
        (["onnx", *w, "-o", str(tmp_path / "folder")], "folder: is a folder; give the onnx file to write"),
        (["tflite", *w, "-o", str(tmp_path / "no" / "m.tflite")], f"{tmp_path / 'no'}: no such folder"),
        (["onnx", *w, "-o", str(tmp_path / "file.txt")], "file.txt: exists; --overwrite replaces it"),
        (["micro", *w, "-o", str(tmp_path / "file.txt")], "file.txt: is a file; the micro export writes a folder"),
        (["micro", *w, "-o", str(tmp_path / "old")], "mirnet_micro.ino: exists (an earlier export, perhaps edited)"),
        (["micro", *w, "-o", str(tmp_path / "tiles")], "mirnet_tiles.h: exists (an earlier export, perhaps edited)"),
    ):  # fmt: skip
        assert main(["export", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert (tmp_path / "file.txt").read_text() == "mine"
    assert (tmp_path / "old" / "mirnet_micro" / "mirnet_micro.ino").read_text() == "// edited by hand"
    assert (tmp_path / "tiles" / "mirnet_micro" / "mirnet_tiles.h").read_text() == "// edited by hand"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder", "old", "tiles", "w.safetensors"]


def test_writers_refuse_to_overwrite_a_model_given_by_name(tmp_path, monkeypatch, capsys):
    from mirnet.cli import main
    from mirnet.zoo import model_file

    monkeypatch.setenv("MIRNET_HOME", str(tmp_path))
    installed = tmp_path / "mine.safetensors"
    mirnet.save_weights(tiny(), installed)
    before = installed.read_bytes()
    assert model_file("mine") == installed and model_file(None) == mirnet.zoo.bundled_path("lol-compact")
    for args in (["export", "onnx", "--model", "mine", "-o", str(installed)],
                 ["demo", "--model", "mine", "-o", str(installed)]):  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mirnet: error: {installed}: refusing to overwrite the input weights")
        assert err.count("\n") == 1
    assert installed.read_bytes() == before


def test_micro_tiles_the_sketch_cannot_hold_are_refused_before_converting(tmp_path):
    from mirnet.export import ExportError, export_micro

    for tile, overlap in ((8, 3), (32, 16), (32, 40), (160, 8), (32, -1)):
        # Both messages are the guard's own: with it gone, the empty calibration would fail later.
        with pytest.raises(ExportError, match="^micro tiles need|tiles per side of the QCIF frame"):
            export_micro(tiny(), tmp_path / "micro", calibration=[], tile=tile, overlap=overlap)
    # No calibration would convert a float32 model, which the sketch would read as int8.
    with pytest.raises(ExportError, match="^the micro export is int8: it needs calibration tiles"):
        export_micro(tiny(), tmp_path / "micro", calibration=None)
    assert not (tmp_path / "micro").exists()


def test_writers_name_a_missing_output_folder_not_their_temporary_file(tmp_path):
    from mirnet.files import atomic_output

    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'absent'}: output folder does not exist$"):
        with atomic_output(tmp_path / "absent" / "m.onnx"):
            pass


def test_writers_write_outputs_whose_names_are_long_but_legal(tmp_path):
    from mirnet.files import atomic_output

    for name in ("x" * 251 + ".png", "é" * 123 + ".png"):  # 255 bytes, the most a name may have
        with atomic_output(tmp_path / name) as tmp:
            tmp.write_bytes(b"picture")
        assert (tmp_path / name).read_bytes() == b"picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * 251 + ".png", "é" * 123 + ".png"])


def test_writers_put_the_output_on_disk_before_renaming_it(tmp_path, monkeypatch):
    from mirnet.files import atomic_output

    events, fsync, replace = [], os.fsync, os.replace

    def synced(fd):
        events.append(("fsync", os.fstat(fd).st_size))
        fsync(fd)

    def renamed(source, target):
        events.append(("replace", Path(target).name))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", renamed)
    with atomic_output(tmp_path / "m.onnx") as tmp:
        tmp.write_bytes(b"model")
    assert events == [("fsync", 5), ("replace", "m.onnx")]


def test_writers_name_their_output_when_the_folder_or_disk_refuses(tmp_path, monkeypatch):
    import errno
    import tempfile

    from mirnet.files import atomic_output

    target = tmp_path / "m.safetensors"
    with pytest.raises(OSError) as caught:  # the disk fills while the temporary file is written
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert not target.exists() and list(tmp_path.iterdir()) == []

    def refuse(*args, **kwargs):  # root may write anywhere, so a read-only folder is simulated
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".m.safetensors.x.part"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=f"Permission denied: '{target}'"):
        with atomic_output(target):
            pass


def test_demo_refuses_to_overwrite_its_input_photo(tmp_path, capsys):
    from mirnet.cli import main

    Image.fromarray(np.full((12, 16, 3), 30, np.uint8)).save(tmp_path / "photo.png")
    before = (tmp_path / "photo.png").read_bytes()
    assert main(["demo", str(tmp_path / "photo.png"), "-o", str(tmp_path / "photo.png")]) == 2
    assert "refusing to overwrite the input photo" in capsys.readouterr().err
    assert (tmp_path / "photo.png").read_bytes() == before


@tflite_needed
def test_export_micro_command_defaults_to_lol_micro_and_warns_when_the_board_cannot_hold_it(tmp_path, capsys):
    from mirnet.cli import main

    assert main(["export", "micro", "-o", str(tmp_path / "fits"), "--calibration-count", "2", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is the report alone
    assert report == json.loads((tmp_path / "fits" / "micro.json").read_text())
    assert report["model"] == "lol_micro" and (tmp_path / "fits" / "lol_micro_int8.tflite").exists()
    assert report["fits_nano_33_ble_sense"] is True and "too large" not in captured.err
    # The frame and the overlap buffers share the board's RAM with the arena.
    assert sum(report["ram_bytes"].values()) <= mirnet.export.BOARD_STATIC_RAM_BUDGET
    # lol-micro's arena grows with the tile: 48x48 is past the board's 160 KB.
    assert main(["export", "micro", "-o", str(tmp_path / "big"), "--calibration-count", "2", "--tile", "48"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {tmp_path / 'big'}/: int8 model")
    assert "warning: too large for an Arduino Nano 33 BLE Sense" in captured.err
    assert json.loads((tmp_path / "big" / "micro.json").read_text())["fits_nano_33_ble_sense"] is False
