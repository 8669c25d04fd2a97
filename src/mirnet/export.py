"""Export a MIRNet to ONNX, TensorFlow Lite (float32 or full-integer int8) and TensorFlow Lite Micro.

Needs the `export` extra (`scripts/setup-env.sh export`, or `pip install -e ".[export]"`). ONNX graphs
take any height and width.
TFLite graphs have one static input shape, NHWC, and are built by TensorFlow's converter from
`mirnet.tf_graph`, a TensorFlow twin of `mirnet.deploy.deployable` (the same network in operations
that int8 kernels support).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .deploy import deployable
from .files import atomic_output
from .model import MIRNet


class ExportError(RuntimeError):
    """An export that cannot be done; the message says why and what to do."""


def require(module: str, what: str):
    """The optional module, imported; an ExportError naming the extra to install when it is missing."""
    import importlib

    # TensorFlow and the converters log to stderr from C++ unless told before they load.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{what} needs the export extra: scripts/setup-env.sh export in a checkout "
                          f"(elsewhere pip install -e '.[export]'); missing {module}") from None


# ---------------------------------------------------------------- ONNX


class _AnySize(nn.Module):
    """MIRNet for export at any size: reflection-pads to the stream multiple without a branch, crops back."""

    def __init__(self, net: MIRNet):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2], x.shape[3]
        m = self.net.size_multiple
        x = F.pad(x, (0, (m - width % m) % m, 0, (m - height % m) % m), mode="reflect")
        return self.net.forward_padded(x)[:, :, :height, :width].clamp(0.0, 1.0)


def export_onnx(model: MIRNet, path: str | Path, opset: int = 18) -> Path:
    """Write `model` as one ONNX file: input "low" (1, 3, H, W) float32 in [0, 1], any H, W of at least
    model.size_multiple (2 ** (num_streams - 1)); output "enhanced", same shape, clamped to [0, 1]."""
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    path = Path(path)
    graph = _AnySize(copy.deepcopy(model).float().cpu().eval()).eval()
    m = model.size_multiple
    sample = torch.rand(1, 3, 8 * m + 1, 12 * m + 3)  # sizes off the multiple, so the pad is traced
    height, width = torch.export.Dim("height", min=m, max=16384), torch.export.Dim("width", min=m, max=16384)
    with torch.no_grad(), _quiet(), atomic_output(path) as tmp:
        program = torch.onnx.export(graph, (sample,), input_names=["low"], output_names=["enhanced"],
                                    dynamic_shapes={"x": {2: height, 3: width}}, opset_version=opset,
                                    external_data=False, dynamo=True, verbose=False)  # fmt: skip
        program.save(str(tmp))
        # Before the rename: a file without its config would be read as another model (onnx_enhancer's cache).
        _set_onnx_metadata(tmp, model)
    return path


def _set_onnx_metadata(path: Path, model: MIRNet) -> None:
    """Record the model's configuration in the file; drop the exporter's per-node debug records."""
    import onnx

    proto = onnx.load(str(path))
    # The exporter annotates every node with its Python stack and source paths: most of a small model's
    # bytes, and the exporting machine's folders, which a shipped file should not carry.
    graphs = [proto.graph, *(f for f in proto.functions)]
    for graph in graphs:
        for node in graph.node:
            node.doc_string = ""
            del node.metadata_props[:]
    for key, value in (("mirnet_config", json.dumps(model.config.to_dict())), ("range", "[0, 1]"), ("layout", "NCHW")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


# ---------------------------------------------------------------- TensorFlow Lite


def _random_crops(images: Iterable[np.ndarray], height: int, width: int, rng) -> list[np.ndarray]:
    """One random HxW crop in [0, 1] (float32) of each uint8 image, enlarging images that are smaller."""
    crops = []
    for image in images:
        if image.shape[0] < height or image.shape[1] < width:
            image = np.asarray(Image.fromarray(image).resize((max(width, image.shape[1]), max(height, image.shape[0]))))
        top, left = rng.integers(image.shape[0] - height + 1), rng.integers(image.shape[1] - width + 1)
        crops.append(image[top : top + height, left : left + width].astype(np.float32) / 255.0)
    return crops


def calibration_tiles(folder: str | Path, height: int, width: int, count: int = 64, seed: int = 0) -> list[np.ndarray]:
    """`count` random HxWx3 float32 crops in [0, 1] of the images in folder (or folder/low), for int8 ranges."""
    from .data import IMAGE_SUFFIXES, read_rgb

    folder = Path(folder)
    if (folder / "low").is_dir():
        folder = folder / "low"
    if not folder.is_dir():
        raise ExportError(f"{folder}: no such folder of images to calibrate int8 ranges with")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not p.name.startswith("."))  # fmt: skip
    if not files:
        raise ExportError(f"{folder}: no images to calibrate int8 ranges with")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(files), count, replace=count > len(files))
    return _random_crops((read_rgb(files[i]) for i in picks), height, width, rng)


def sample_calibration_tiles(height: int, width: int, count: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Calibration crops of the drawn low-light sample scene (mirnet.demo), when no photos are given."""
    from .demo import sample_scene

    low, _ = sample_scene(max(400, height), max(600, width), seed=seed)
    return _random_crops([low] * count, height, width, np.random.default_rng(seed))


def convert_tflite(model: MIRNet, height: int, width: int, calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """A static-shape NHWC TFLite flatbuffer of `model`: float32, or full-integer int8 (int8 input and
    output, int8 weights and activations) when calibration tiles (HxWx3 float32 in [0, 1]) are given."""
    require("tensorflow", "TFLite export")
    from .tf_graph import tflite_flatbuffer

    m = model.size_multiple
    if height % m or width % m:
        raise ExportError(f"TFLite input size must be a multiple of {m} for this model, got {height}x{width}")
    representative = None
    if calibration is not None:
        representative = [np.asarray(t, np.float32)[None] for t in calibration]
        if not representative:
            raise ExportError("int8 export needs at least one calibration tile")
        if representative[0].shape != (1, height, width, 3):
            raise ExportError(f"calibration tiles must be {height}x{width}x3, got {representative[0].shape[1:]}")
        # The int8 input and output take their ranges from what calibration sees, so dark tiles alone
        # would clip every brighter pixel (the sample scene's tiles end at 0.16, and the outputs they
        # give at 0.75). One tile more, the first with a white and a black pixel, makes both [0, 1]:
        # scale 1/255, zero point -128, each 8-bit value its own int8 value.
        spanning = representative[0].copy()
        spanning[0, 0, 0], spanning[0, 0, 1] = 1.0, 0.0
        representative.append(spanning)
    with _quiet(), silenced_output():
        return tflite_flatbuffer(deployable(model), height, width, representative)


def export_tflite(model: MIRNet, path: str | Path, height: int = 400, width: int = 600,
                  calibration: Iterable[np.ndarray] | None = None) -> Path:  # fmt: skip
    """Write a .tflite of `model` for HxW NHWC input; int8 when calibration tiles are given."""
    path = Path(path)
    flat = convert_tflite(model, height, width, calibration)
    with atomic_output(path) as tmp:
        tmp.write_bytes(flat)
    return path


@contextlib.contextmanager
def _quiet():
    """Silence the converters' Python warnings and log chatter (absl, TF, torch.export)."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


# ---------------------------------------------------------------- TensorFlow Lite Micro

MICRO_TILE = 32  # lol-micro needs a 125,665-byte arena at 32x32 and 173,525 at 40x40 (limit 160 KB)
MICRO_OVERLAP = 8
MICRO_MAX_STARTS = 32  # the sketch's tile-position arrays (mirnet_tiles.h.in: ys, xs)
# What the sketch may use on an Arduino Nano 33 BLE Sense (256 KB RAM, 1 MB flash): the arena beside
# the camera frame, overlap buffers and the core's own RAM; the model beside the libraries' code.
BOARD_ARENA_BUDGET = 160 * 1024
# Arena, frame and overlap buffers together: the rest of the 256 KB (56 KB) is left to the Mbed OS
# core, the interpreter's objects, the stack and the heap. A budget, not a measurement on the board.
BOARD_STATIC_RAM_BUDGET = 200 * 1024
BOARD_MODEL_BUDGET = 300 * 1024
QCIF = (144, 176)  # the OV7675's frame (height, width) used by the sketch
# Cortex-M4F throughput assumed for the time estimate: CMSIS-NN int8 convolutions reach about one
# MAC per cycle with the dual 16-bit MAC (SMLAD) on wide layers; MIRNet's 8-16 channel layers,
# attention and resizing keep it lower, so the estimate takes 0.5 MAC/cycle (0.25 for a pessimistic bound).
M4_HZ = 64e6
M4_MACS_PER_CYCLE = (0.5, 0.25)
# TFLite Micro's Python interpreter runs reference kernels; CMSIS-NN asks for scratch buffers on top.
ARENA_MARGIN = 4096

# TFLite Micro's MicroMutableOpResolver methods are the op names in CamelCase, "2D" kept upper case
# (AddConv2D, AddAveragePool2D); this one does not follow the rule.
_RESOLVER = {"PADV2": "AddPadV2"}


def tflite_ops(flat: bytes) -> list[str]:
    """The builtin operator names a .tflite flatbuffer uses, in the order of its operator codes."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(flat, 0)
    return [names[max(code.builtinCode, code.deprecatedBuiltinCode)] for code in model.operatorCodes]


def _resolver_method(op: str) -> str:
    words = (part if part[0].isdigit() else part.capitalize() for part in op.split("_"))
    return _RESOLVER.get(op) or "Add" + "".join(words)


def tile_starts_count(length: int, tile: int, overlap: int) -> int:
    from .enhance import tile_starts

    return len(tile_starts(length, tile, overlap))


def c_array(flat: bytes, name: str) -> str:
    """A C header holding `flat` as an aligned const array (flash on a microcontroller)."""
    lines = [", ".join(f"0x{b:02x}" for b in flat[i : i + 16]) for i in range(0, len(flat), 16)]
    body = ",\n  ".join(lines)
    return (f"// Generated by mirnet export micro. {len(flat)} bytes.\n#pragma once\n\n"
            f"alignas(16) const unsigned char {name}[] = {{\n  {body}\n}};\n"
            f"const unsigned int {name}_len = {len(flat)};\n")  # fmt: skip


def check_micro_tiles(tile: int, overlap: int) -> None:
    """ExportError unless the sketch's tiler can use these: room to blend, tiles inside the QCIF frame,
    and at most MICRO_MAX_STARTS tile positions per side."""
    if not 0 <= overlap < tile / 2 or tile > min(QCIF):
        raise ExportError(f"micro tiles need 0 <= overlap < tile / 2 and tile <= {min(QCIF)}; "
                          f"got tile {tile}, overlap {overlap}")  # fmt: skip
    if max(tile_starts_count(side, tile, overlap) for side in QCIF) > MICRO_MAX_STARTS:
        raise ExportError(f"tile {tile} with overlap {overlap} needs more than {MICRO_MAX_STARTS} tiles "
                          "per side of the QCIF frame; use larger tiles")  # fmt: skip


def micro_files(folder: str | Path, name: str = "mirnet") -> list[Path]:
    """The files export_micro writes into folder: the model, and the sketch in a folder named as its
    .ino (as Arduino wants it), then micro.json last."""
    folder, sketch = Path(folder), Path(folder) / "mirnet_micro"
    return [folder / f"{name}_int8.tflite", sketch / "mirnet_model_data.h", sketch / "mirnet_micro.ino",
            sketch / "mirnet_tiles.h", folder / "micro.json"]  # fmt: skip


def export_micro(model: MIRNet, folder: str | Path, calibration: Iterable[np.ndarray], tile: int = MICRO_TILE,
                 overlap: int = MICRO_OVERLAP, name: str = "mirnet") -> dict:  # fmt: skip
    """Write an int8 model for TensorFlow Lite Micro and an Arduino sketch that runs it tile by tile on
    camera frames; return (and write as micro.json) its sizes, measured arena and time estimate."""
    from importlib.resources import files

    from .exported import arena_size
    from .model import count_macs, count_parameters

    folder = Path(folder)
    if calibration is None:  # convert_tflite would give a float32 model, which the sketch reads as int8
        raise ExportError("the micro export is int8: it needs calibration tiles (calibration_tiles, or "
                          "sample_calibration_tiles)")  # fmt: skip
    check_micro_tiles(tile, overlap)  # before the slow conversion
    flat = convert_tflite(model, tile, tile, calibration)
    arena = arena_size(flat)
    sketch_arena = arena + ARENA_MARGIN  # what the sketch declares: room for CMSIS-NN scratch too
    ops = tflite_ops(flat)
    macs_tile = count_macs(model, tile, tile)
    tiles = tile_starts_count(QCIF[0], tile, overlap) * tile_starts_count(QCIF[1], tile, overlap)
    macs_frame = macs_tile * tiles
    keep = 2 * (tile * QCIF[1] + tile * tile)
    frame = 2 * QCIF[0] * QCIF[1]  # RGB565
    fits = (sketch_arena <= BOARD_ARENA_BUDGET and sketch_arena + frame + keep <= BOARD_STATIC_RAM_BUDGET
            and len(flat) <= BOARD_MODEL_BUDGET)  # fmt: skip
    report = {
        "model": name, "parameters": count_parameters(model), "config": model.config.to_dict(),
        "tile": [tile, tile], "overlap": overlap, "model_bytes": len(flat), "arena_bytes": arena,
        "arena_bytes_in_sketch": sketch_arena, "ops": ops,
        "fits_nano_33_ble_sense": fits,
        "macs_per_tile": macs_tile, "tiles_per_qcif_frame": tiles, "macs_per_qcif_frame": macs_frame,
        "ms_per_qcif_frame_estimate": [round(macs_frame / (rate * M4_HZ) * 1e3) for rate in M4_MACS_PER_CYCLE],
        "estimate_assumptions": f"Cortex-M4F at {M4_HZ / 1e6:.0f} MHz, {M4_MACS_PER_CYCLE[0]} MAC/cycle "
                                f"({M4_MACS_PER_CYCLE[1]} pessimistic), convolution MACs only",
        "ram_bytes": {"arena": sketch_arena, "frame_rgb565": frame, "overlap_keep": keep},
    }  # fmt: skip
    paths = micro_files(folder, name)
    paths[1].parent.mkdir(parents=True, exist_ok=True)  # the sketch's folder, and the folder it is in
    resolver = "\n".join(f"  resolver.{_resolver_method(op)}();" for op in ops)
    values = {"@MODEL@": name, "@ARENA@": str(sketch_arena), "@TILE_H@": str(tile), "@TILE_W@": str(tile),
              "@OVERLAP@": str(overlap), "@KEEP@": f"{keep:,}", "@NUM_OPS@": str(len(ops)), "@RESOLVER@": resolver}  # fmt: skip

    def render(template: str) -> str:
        text = files("mirnet").joinpath(f"micro/{template}.in").read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    contents = [flat, c_array(flat, "g_mirnet_model"), render("mirnet_micro.ino"), render("mirnet_tiles.h"),
                json.dumps(report, indent=2) + "\n"]  # fmt: skip
    for path, content in zip(paths, contents, strict=True):
        with atomic_output(path) as tmp:
            tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content)
    return report


@contextlib.contextmanager
def silenced_output():
    """Mute the C-level stdout and stderr (TFLite Micro prints on every interpreter it makes and on
    every failed allocation; the TFLite converter prints its statistics)."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
