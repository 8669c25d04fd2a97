"""How far tiled inference is from whole-image inference, per tile size and overlap.

MIRNet's attention pools over the whole input (SKFF and channel attention), so a tile sees a
different global context than the whole image: tiled outputs are close to, not equal to, the
whole-image output. This measures how close, on real photos (the low-light images of a paired
folder, e.g. LOL eval15) upscaled to a size where tiling is used.

    .venv/bin/python scripts/seam_error.py --data ../shared/data/LOL/eval15 [--model NAME]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from mirnet.data import load_pairs
from mirnet.enhance import Enhancer
from mirnet.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--scale", type=float, default=2.0, help="upscale the images first (600x400 -> 1200x800)")
    parser.add_argument("--tiles", default="256,512")
    parser.add_argument("--overlaps", default="0,16,32,64")
    parser.add_argument("--json")
    args = parser.parse_args()

    enhancer = Enhancer(args.model, device="cpu")
    pairs = load_pairs(args.data)[: args.images]
    rows = []
    for tile in (int(t) for t in args.tiles.split(",")):
        for overlap in (int(o) for o in args.overlaps.split(",")):
            diffs, psnrs, maxes = [], [], []
            for pair in pairs:
                low = Image.fromarray(pair.low)
                size = (round(low.width * args.scale), round(low.height * args.scale))
                rgb = np.asarray(low.resize(size, Image.Resampling.BICUBIC))
                whole = enhancer.enhance_rgb(rgb, tile=None)
                tiled = enhancer.enhance_rgb(rgb, tile=tile, overlap=overlap)
                delta = np.abs(whole.astype(np.int16) - tiled.astype(np.int16))
                diffs.append(delta.mean())
                maxes.append(int(delta.max()))
                psnrs.append(psnr(tiled, whole))
            rows.append({"tile": tile, "overlap": overlap, "mean_abs_diff_8bit": float(np.mean(diffs)),
                         "max_abs_diff_8bit": max(maxes), "psnr_vs_whole_db": float(np.mean(psnrs))})  # fmt: skip
            r = rows[-1]
            print(f"tile {tile:4d} overlap {overlap:3d}: mean |diff| {r['mean_abs_diff_8bit']:.2f} levels, "
                  f"max {r['max_abs_diff_8bit']}, PSNR vs whole image {r['psnr_vs_whole_db']:.1f} dB", flush=True)  # fmt: skip
    print(f"({len(pairs)} images of {args.data} at x{args.scale}; 8-bit RGB; {torch.get_num_threads()} threads)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
