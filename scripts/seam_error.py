"""How far tiled inference is from whole-image inference, per tile size and overlap.

MIRNet's attention pools over the whole input (SKFF and channel attention), so a tile alone sees
another global context than the whole image and picks another exposure. mirnet therefore runs a
context pass over the whole image (downscaled to at most --contexts pixels) and hands its pooled
values to every tile. This measures tiles with and without that context against whole-image output
and against ground truth, on real photos (the low-light images of a paired folder, e.g. LOL
eval15) upscaled to a size where tiling is used.

    .venv/bin/python scripts/seam_error.py --data ../shared/data/LOL/eval15 [--model NAME]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from mirnet.data import load_pairs
from mirnet.enhance import Enhancer, _to_uint8
from mirnet.metrics import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--scale", type=float, default=2.0, help="upscale the images first (600x400 -> 1200x800)")
    parser.add_argument("--tiles", default="512")
    parser.add_argument("--overlaps", default="0,32")
    parser.add_argument("--contexts", default="0,1048576,80000",
                        help="global-context pass sizes in pixels (0: each tile its own; 1048576: the default; "
                             "80000: as a 12 MP photo gets, relative to its size)")
    parser.add_argument("--json")
    args = parser.parse_args()

    enhancer = Enhancer(args.model, device="cpu", precision="fp32")  # bf16 rounding would add its own differences
    pairs = load_pairs(args.data)[: args.images]
    rows = []
    combos = [(int(t), int(o), int(c)) for t in args.tiles.split(",") for o in args.overlaps.split(",")
              for c in args.contexts.split(",")]  # fmt: skip
    wholes = {}
    for tile, overlap, context in combos:
        diffs, psnrs, maxes, gts = [], [], [], []
        for pair in pairs:
            low = Image.fromarray(pair.low)
            size = (round(low.width * args.scale), round(low.height * args.scale))
            rgb = np.asarray(low.resize(size, Image.Resampling.BICUBIC))
            x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255
            if pair.stem not in wholes:
                wholes[pair.stem] = _to_uint8(enhancer.enhance_tensor(x, None))
            whole = wholes[pair.stem]
            tiled = _to_uint8(enhancer.enhance_tensor(x, tile, overlap, context or None))
            high = np.asarray(Image.fromarray(pair.high).resize(size, Image.Resampling.BICUBIC))
            gts.append((psnr(whole, high), psnr(tiled, high)))
            delta = np.abs(whole.astype(np.int16) - tiled.astype(np.int16))
            diffs.append(delta.mean())
            maxes.append(int(delta.max()))
            psnrs.append(psnr(tiled, whole))
        rows.append({"tile": tile, "overlap": overlap, "context_pixels": context,
                     "psnr_whole_vs_gt": float(np.mean([g[0] for g in gts])),
                     "psnr_tiled_vs_gt": float(np.mean([g[1] for g in gts])),
                     "mean_abs_diff_8bit": float(np.mean(diffs)),
                     "max_abs_diff_8bit": max(maxes), "psnr_vs_whole_db": float(np.mean(psnrs))})  # fmt: skip
        r = rows[-1]
        print(f"tile {tile:4d} overlap {overlap:3d} context {context:8d}: mean |diff| "
              f"{r['mean_abs_diff_8bit']:.2f} levels, max {r['max_abs_diff_8bit']}, PSNR vs whole image "
              f"{r['psnr_vs_whole_db']:.1f} dB; vs ground truth: tiled {r['psnr_tiled_vs_gt']:.2f}, "
              f"whole {r['psnr_whole_vs_gt']:.2f} dB", flush=True)  # fmt: skip
    print(f"({len(pairs)} images of {args.data} at x{args.scale}; 8-bit RGB; {torch.get_num_threads()} threads)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
