"""Quality of the exported models on LOL eval15: what float32 -> int8 and whole image -> tiles cost.

Desktop: the default model in torch, as TFLite float32 and as full-integer int8 (LiteRT), all at
LOL's 600x400. Micro: the micro model in torch on whole images and tile by tile, and its int8 model
tile by tile in LiteRT and in the TensorFlow Lite Micro interpreter (the real TFLM kernels), with
the blending of the Arduino sketch. Histogram equalization is measured beside them. int8 ranges are
calibrated on crops of the training images (our485), never on eval15. Metrics: PSNR (peak 255) and
SSIM (Gaussian 11x11, sigma 1.5) on 8-bit RGB; GT-mean PSNR labelled separately.

    .venv/bin/python scripts/eval_deploy.py --data ../shared/data/LOL/eval15 \
        --calibration ../shared/data/LOL/our485 --out docs/results/deploy
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mirnet import load_model
from mirnet.baselines import histogram_equalization
from mirnet.data import load_pairs
from mirnet.export import MICRO_OVERLAP, MICRO_TILE, calibration_tiles, convert_tflite
from mirnet.exported import MicroModel, TFLiteModel, arena_size, run_tiled
from mirnet.evaluate import evaluate
from mirnet.runtime import hardware_name


class TorchTile:
    """A torch model as a fixed-size tile model (for run_tiled)."""

    def __init__(self, model, tile: int):
        self.model, self.tile = model.eval(), (tile, tile)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y = self.model(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]).clamp(0, 1)
        return y[0].permute(1, 2, 0).numpy()


def whole(model) -> TorchTile:
    return TorchTile(model, 0)  # a torch model takes any size: the tile size is not used


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


class Timed:
    """A float [0, 1] image method as the uint8 method mirnet.evaluate scores, timing its calls."""

    def __init__(self, method):
        self.method, self.seconds, self.calls = method, 0.0, 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        output = self.method(image.astype(np.float32) / 255.0)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return to_uint8(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="LOL/eval15")
    parser.add_argument("--calibration", required=True, help="LOL/our485 (training images)")
    parser.add_argument("--model", default=None, help="desktop model (default: the default)")
    parser.add_argument("--micro", default="lol-micro", help="micro model")
    parser.add_argument("--calibration-count", type=int, default=64)
    parser.add_argument("--out", default="docs/results/deploy")
    args = parser.parse_args()

    pairs = load_pairs(args.data)
    height, width = pairs[0].low.shape[:2]
    desktop, micro = load_model(args.model), load_model(args.micro)
    started = time.time()
    methods: dict[str, tuple[str, object]] = {}  # name: (group, float image -> float image)
    methods["histogram equalization"] = ("-", lambda image: histogram_equalization(to_uint8(image)) / 255.0)

    print("converting the desktop model (float32, int8)", flush=True)
    full_calibration = calibration_tiles(args.calibration, height, width, count=args.calibration_count)
    desktop_f32 = convert_tflite(desktop, height, width)
    desktop_i8 = convert_tflite(desktop, height, width, full_calibration)
    methods["default, torch float32"] = ("desktop", whole(desktop))
    methods["default, TFLite float32"] = ("desktop", TFLiteModel(desktop_f32))
    methods["default, TFLite int8"] = ("desktop", TFLiteModel(desktop_i8))

    print("converting the micro model (int8 tiles)", flush=True)
    tiles = calibration_tiles(args.calibration, MICRO_TILE, MICRO_TILE, count=4 * args.calibration_count)
    micro_i8 = convert_tflite(micro, MICRO_TILE, MICRO_TILE, tiles)
    arena = arena_size(micro_i8)
    tiled = lambda runner: lambda image: run_tiled(runner, image, MICRO_OVERLAP)  # noqa: E731
    methods["micro, torch float32, whole image"] = ("micro", whole(micro))
    methods["micro, torch float32, 32x32 tiles"] = ("micro", tiled(TorchTile(micro, MICRO_TILE)))
    methods["micro, LiteRT int8, 32x32 tiles"] = ("micro", tiled(TFLiteModel(micro_i8)))
    methods["micro, TFLite Micro int8, 32x32 tiles"] = ("micro", tiled(MicroModel(micro_i8, arena)))

    timed = {name: Timed(method) for name, (_, method) in methods.items()}
    result = evaluate(pairs, timed, progress=True)
    rows = []
    for mean in result.means():
        name = mean.pop("method")
        group, clock = methods[name][0] if name in methods else "-", timed.get(name)
        seconds = clock.seconds / clock.calls if clock else None  # the input itself: nothing to time
        rows.append({"method": name, "group": group, **mean, "seconds_per_image": seconds})
    per_image = result.rows

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "data": args.data, "images": len(pairs), "size": [height, width], "calibration": args.calibration,
        "hardware": hardware_name(), "minutes": round((time.time() - started) / 60, 1),
        "sizes_bytes": {"default_tflite_float32": len(desktop_f32), "default_tflite_int8": len(desktop_i8),
                        "micro_tflite_int8": len(micro_i8)},
        "micro_arena_bytes": arena, "micro_tile": MICRO_TILE, "micro_overlap": MICRO_OVERLAP,
        "rows": rows, "per_image": per_image,
    }  # fmt: skip
    (out / "deploy.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| method | PSNR (dB) | SSIM | GT-mean PSNR (dB) | s/image |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['gt_mean_psnr']:.2f} | "
              f"{'-' if r['seconds_per_image'] is None else format(r['seconds_per_image'], '.2f')} |"
              for r in rows]  # fmt: skip
    (out / "deploy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}/deploy.json, deploy.md ({record['minutes']} min, {record['hardware']})")


if __name__ == "__main__":
    main()
