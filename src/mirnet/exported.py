"""Run exported models: ONNX through onnxruntime, .tflite through the LiteRT interpreter, and int8
micro models through the TensorFlow Lite Micro interpreter (its reference kernels), tile by tile.

Images are HxWx3 float32 arrays in [0, 1] throughout; int8 models are (de)quantized at the edges
with the scale and zero point stored in the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .enhance import (DEFAULT_OVERLAP, Enhancer, InferenceError, check_pixels, check_tiling, tile_starts,
                      whole_number)
from .errors import first_line
from .export import ExportError, require, silenced_output
from .model import MIRNet

WHOLE_IMAGES_ONLY = "the onnx backend enhances whole images"


class OnnxEnhancer(Enhancer):
    """An Enhancer whose network is an ONNX file run by onnxruntime; whole images only (an ONNX graph
    has no hook to share a whole image's global context between tiles)."""

    def __init__(self, path: str | Path, threads: int | None = None, self_ensemble: bool = False):
        self.self_ensemble = self_ensemble
        ort = require("onnxruntime", "the onnx backend")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ExportError(f"{path}: not a usable ONNX model ({first_line(error)})") from None
        self.input_name = self.session.get_inputs()[0].name
        config = self.session.get_modelmeta().custom_metadata_map.get("mirnet_config")
        # The graph reflection-pads to this multiple; an ONNX file not exported by mirnet gets no help.
        self.multiple = 2 ** (json.loads(config)["num_streams"] - 1) if config else 1

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h >= height or pad_w >= width:
            # Too small to reflect that far: edge copies, as the torch model (MIRNet.forward) does.
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        try:
            y = self.session.run(None, {self.input_name: x.float().numpy()})[0]
        except Exception as error:  # onnxruntime raises its own exception types
            raise InferenceError(f"onnxruntime failed ({first_line(error)})") from None
        return torch.from_numpy(y[..., :height, :width]).clamp_(0, 1)

    def enhance_tensor(self, x: torch.Tensor, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                       context_pixels: int | None = None) -> torch.Tensor:  # fmt: skip
        check_pixels(x)
        if tile is not None and (tile < x.shape[2] or tile < x.shape[3]):
            raise ExportError(f"{WHOLE_IMAGES_ONLY}; pass tile=None")
        return self._run(x)

    def check_tiling(self, tile: int | str | None, overlap: int) -> None:
        """Whole images only: tile None or "auto"; overlap, which no tile uses, is not looked at."""
        if tile is None or isinstance(tile, str) and tile == "auto":
            return
        if whole_number(tile):  # NumPy's integers too
            raise ValueError(f"tile={tile}: {WHOLE_IMAGES_ONLY}; pass tile=None")
        check_tiling(tile, 0)  # the shared refusal of a tile of the wrong type

    def tile_for(self, height: int, width: int) -> None:
        return None  # whole images at any size


def onnx_enhancer(model: str | Path | None = None, self_ensemble: bool = False) -> OnnxEnhancer:
    """An OnnxEnhancer for an .onnx file, or for a model name/weights file exported once to a cache
    (beside the installed models, keyed by the weights and the exporter: onnx_cache_path) and reused."""
    from .export import export_onnx
    from .zoo import load_model

    if model is not None and str(model).lower().endswith(".onnx"):
        if not Path(model).is_file():
            raise ExportError(f"{model}: no such file")
        return OnnxEnhancer(model, self_ensemble=self_ensemble)
    net = load_model(model)
    cached = onnx_cache_path(net)
    if cached.exists():
        try:
            return OnnxEnhancer(cached, self_ensemble=self_ensemble)
        except ExportError:  # damaged (a full disk, a crash): exported again below
            pass
    cached.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(net, cached)
    return OnnxEnhancer(cached, self_ensemble=self_ensemble)


def onnx_cache_path(net: MIRNet) -> Path:
    """Where onnx_enhancer keeps net's export: named by its weights and by what exports them (the
    exporter's and the model's code, torch's version), so that a newer mirnet does not reuse an older
    file."""
    from . import export, model
    from .zoo import models_folder

    digest = hashlib.sha256()
    for module in (export, model):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(torch.__version__.encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return models_folder() / "onnx" / f"{digest.hexdigest()[:16]}.onnx"


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["scale"], detail["zero"]
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return q.astype(np.float32)
    return (q.astype(np.float32) - detail["zero"]) * detail["scale"]


class TFLiteModel:
    """A static-shape .tflite model in the LiteRT interpreter: one 1xHxWx3 tile in, one out."""

    def __init__(self, model: bytes | str | Path, threads: int = 2):
        require("ai_edge_litert", "running .tflite models")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        flat = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.interpreter = Interpreter(model_content=flat, num_threads=threads)
        try:
            self.interpreter.allocate_tensors()
        except RuntimeError as error:
            if "XNNPACK" not in str(error):
                raise
            # XNNPACK refuses some int8 quantization parameters that TFLite's own kernels accept
            # (seen on a micro model: "Node number 203 (TfLiteXNNPackDelegate) failed to prepare").
            builtin_only = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            self.interpreter = Interpreter(model_content=flat, num_threads=threads,
                                           experimental_op_resolver_type=builtin_only)  # fmt: skip
            self.interpreter.allocate_tensors()
        self.input, self.output = (self._detail(d) for d in (self.interpreter.get_input_details()[0],
                                                              self.interpreter.get_output_details()[0]))  # fmt: skip

    @staticmethod
    def _detail(d: dict) -> dict:
        scale, zero = d["quantization"]
        return {"index": d["index"], "shape": tuple(d["shape"]), "dtype": d["dtype"], "scale": scale, "zero": zero}

    @property
    def tile(self) -> tuple[int, int]:
        return self.input["shape"][1], self.input["shape"][2]

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], _quantize(tile[None], self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"])[0], self.output)


class MicroModel:
    """An int8 .tflite model in the TensorFlow Lite Micro interpreter with a tensor arena of arena_size bytes."""

    def __init__(self, model: bytes | str | Path, arena_size: int):
        runtime = require("tflite_micro", "running TFLite Micro models").runtime
        flat = model if isinstance(model, bytes) else Path(model).read_bytes()
        with silenced_output():
            self.interpreter = runtime.Interpreter.from_bytes(flat, arena_size=arena_size)
        self.input = self._detail(self.interpreter.get_input_details(0))
        self.output = self._detail(self.interpreter.get_output_details(0))

    @staticmethod
    def _detail(d: dict) -> dict:
        q = d["quantization_parameters"]
        scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
        zero = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
        return {"shape": tuple(d["shape"]), "dtype": d["dtype"], "scale": scale, "zero": zero}

    @property
    def tile(self) -> tuple[int, int]:
        return self.input["shape"][1], self.input["shape"][2]

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        self.interpreter.set_input(_quantize(tile[None], self.input), 0)
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_output(0)[0], self.output)


def arena_size(model: bytes, low: int = 1024, high: int = 4 * 1024 * 1024, step: int = 256) -> int:
    """The smallest tensor arena (to `step` bytes) in which TFLite Micro allocates the model, by bisection."""
    runtime = require("tflite_micro", "measuring the TFLite Micro arena").runtime

    def fits(size: int) -> bool:
        try:
            with silenced_output():
                runtime.Interpreter.from_bytes(model, arena_size=size)
            return True
        except RuntimeError:
            return False

    if not fits(high):
        raise ExportError(f"TFLite Micro cannot allocate this model even in {high} bytes (an unsupported op?)")
    while high - low > step:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def _rising(length: int, overlap: int, rising: bool) -> np.ndarray:
    weight = np.ones(length, np.float32)
    if rising and overlap > 0:
        weight[:overlap] = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
    return weight


def run_tiled(model, image: np.ndarray, overlap: int = 8) -> np.ndarray:
    """Enhance an HxWx3 [0, 1] image with a fixed-tile-size model as the Arduino sketch does: tiles in
    raster order, each blended over what earlier tiles wrote (old * (1 - w) + new * w, w rising
    across the overlap on the sides shared with earlier tiles), always fed the original pixels."""
    th, tw = model.tile
    height, width = image.shape[:2]
    if height < th or width < tw:
        raise ValueError(f"image {width}x{height} is smaller than the model's {tw}x{th} tile")
    if min(th, tw) <= 2 * overlap:
        raise ValueError(f"tile {tw}x{th} must be more than twice the overlap ({overlap})")
    out = np.zeros((height, width, 3), np.float32)
    for i, top in enumerate(tile_starts(height, th, overlap)):
        for j, left in enumerate(tile_starts(width, tw, overlap)):
            w = np.outer(_rising(th, overlap, i > 0), _rising(tw, overlap, j > 0))[..., None]
            region = out[top : top + th, left : left + tw]
            region[:] = region * (1 - w) + model(image[top : top + th, left : left + tw]) * w
    return np.clip(out, 0.0, 1.0)
