"""Inference speed and memory of `mirnet enhance`: seconds per megapixel and peak memory of the
default model against the paper preset, for LOL-sized (0.24 MP), 2 MP and 12 MP images, in one run;
the default model exported to ONNX in onnxruntime (whole images, up to 2 MP); and, with
--models default,x8, the default model's x8 self-ensemble (`mirnet enhance --self-ensemble`).
--model NAME puts another bundled or installed model (or a .safetensors file) in the default model's
place in every case, e.g. --model lol-compact-2h; the tables keep calling it "default".

Each (model, size) case runs in its own process so that its peak resident memory is its own. The
paper preset on 2 MP and 12 MP would take tens of minutes on a laptop CPU; there it is timed on a few
of its tiles and the time is extrapolated to all tiles (said so in the table).

--side-by-side N adds the speed ratio measured in one process: N rounds, each timing the paper
preset once and then the default model over about as long (as many runs as fit, their mean time),
on the same whole image, so that a burst of load from elsewhere weighs on both alike; it reports
the median ratio over the rounds and their range.

    .venv/bin/python scripts/bench_enhance.py [--sizes 400x600,1200x1680,3000x4000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SIZES = "400x600,1200x1680,3000x4000"


def child(model_name: str, height: int, width: int, max_tiles: int | None, tile: str, device: str,
          precision: str, repeat: int, default: str | None = None) -> dict:  # fmt: skip
    import numpy as np
    import torch

    from mirnet import create_model
    from mirnet.enhance import CONTEXT_PIXELS, Enhancer, auto_tile, tile_starts

    # The paper preset's weights are random: weights do not change the speed.
    model = create_model("paper") if model_name == "paper" else default
    if model_name == "onnx":  # the default model exported to ONNX, in onnxruntime: whole images only
        from mirnet.exported import onnx_enhancer

        enhancer, tile = onnx_enhancer(default), "none"
    else:
        enhancer = Enhancer(model, device=device, precision=precision, self_ensemble=model_name == "x8")
    rng = np.random.default_rng(0)
    rgb = (rng.random((height, width, 3)) * 60).astype(np.uint8)
    enhancer.enhance_rgb(rgb[:64, :64])  # warm-up: first-call allocations
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    chosen = auto_tile(height, width) if tile == "auto" else (None if tile == "none" else int(tile))
    tiles = 1 if chosen is None else len(tile_starts(height, chosen, 32)) * len(tile_starts(width, chosen, 32))
    if max_tiles is not None and tiles > max_tiles:
        size = min(chosen, height), min(chosen, width)
        x = torch.rand(1, 3, *size)
        enhancer._run(x)  # warm-up at the timed shape: oneDNN picks its kernels per shape on first use
        start = time.perf_counter()
        for _ in range(max_tiles):
            enhancer._run(x)
        per_pixel = (time.perf_counter() - start) / max_tiles / (size[0] * size[1])
        # Plus the global-context pass over the image downscaled to CONTEXT_PIXELS, at the same rate.
        seconds = per_pixel * (tiles * size[0] * size[1] + min(CONTEXT_PIXELS, height * width))
        note = f"extrapolated from {max_tiles} of {tiles} tiles + context pass"
    else:
        start = time.perf_counter()
        enhancer.enhance_rgb(rgb, tile=chosen)
        first = time.perf_counter() - start
        # Steady state, as for a folder of photos of one size: the median of `repeat` more runs (the
        # first run at a new shape also pays oneDNN's one-time kernel selection, reported apart).
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            enhancer.enhance_rgb(rgb, tile=chosen)
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times)) if times else first
        note = (f"{tiles} tile(s)" if chosen else "whole image") + (
            f", median of {repeat} after a first run of {first:.2f} s" if repeat else "")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model_name, "height": height, "width": width, "megapixels": height * width / 1e6,
            "seconds": seconds, "s_per_mp": seconds / (height * width / 1e6), "peak_rss_mb": peak_mb,
            "baseline_rss_mb": baseline_mb, "tile": chosen, "note": note,
            "parameters": sum(p.numel() for p in enhancer.model.parameters()) if hasattr(enhancer, "model") else None,
            "runtime": enhancer.runtime.describe() if hasattr(enhancer, "runtime") else {"backend": "onnxruntime"}}  # fmt: skip


def side_by_side(height: int, width: int, rounds: int, device: str, precision: str,
                 model: str | None = None) -> dict:  # fmt: skip
    """paper / default time per round on one whole image, both models in this process, interleaved."""
    import numpy as np

    from mirnet import create_model
    from mirnet.enhance import Enhancer

    default = Enhancer(model, device=device, precision=precision)
    paper = Enhancer(create_model("paper"), device=device, precision=precision)
    rgb = (np.random.default_rng(0).random((height, width, 3)) * 60).astype(np.uint8)

    def timed(enhancer) -> float:
        start = time.perf_counter()
        enhancer.enhance_rgb(rgb, tile=None)
        return time.perf_counter() - start

    # First runs at this shape: oneDNN's kernel selection.
    timed(paper)
    default_estimate = min(timed(default) for _ in range(3))
    paper_times, default_times = [], []
    for _ in range(rounds):
        paper_times.append(timed(paper))
        # Both timed over about the same span, each as a mean: a median of many short default runs
        # would drop the bursts that the one long paper run has to absorb.
        runs = max(5, round(paper_times[-1] / default_estimate))
        default_times.append(float(np.mean([timed(default) for _ in range(runs)])))
    ratios = [p / d for p, d in zip(paper_times, default_times)]
    return {"height": height, "width": width, "rounds": rounds, "ratio_median": float(np.median(ratios)),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "paper_seconds": paper_times,
            "default_seconds": default_times, "runtime": default.runtime.describe()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--models", default="default,paper,onnx",
                        help="default, paper, onnx (the default model in onnxruntime, whole images up to "
                             "2 MP), x8 (the default model's self-ensemble)")
    parser.add_argument("--model", help="the model in the default's place: a bundled or installed model's name "
                                        "or a .safetensors file (default: the bundled default)")
    parser.add_argument("--paper-max-tiles", type=int, default=2, help="time the paper preset on this many tiles")
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 where this CPU runs it natively, as `mirnet enhance` (default)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="whole images: the median of this many runs after the first (default 3)")
    parser.add_argument("--side-by-side", type=int, default=0, metavar="ROUNDS",
                        help="also measure paper / default in one process, interleaved, over this "
                             "many rounds (whole images up to 1 MP)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.child.startswith("side-by-side:"):
        height, width = (int(v) for v in args.child.split(":")[1].split("x"))
        print(json.dumps(side_by_side(height, width, args.side_by_side, args.device, args.precision, args.model)))
        return
    if args.child:
        model, size, max_tiles = args.child.split(":")
        height, width = (int(v) for v in size.split("x"))
        limit = int(max_tiles) or None
        print(json.dumps(child(model, height, width, limit, args.tile, args.device, args.precision, args.repeat,
                               args.model)))  # fmt: skip
        return

    if args.model:  # a wrong name or file is reported once, here, rather than by every child's traceback
        from mirnet.zoo import load_model
        from mirnet.weights import WeightsError

        try:
            load_model(args.model)
        except WeightsError as error:
            sys.exit(f"bench_enhance.py: error: --model: {error}")
    chosen_model = ["--model", args.model] if args.model else []
    rows = []
    for size in args.sizes.split(","):
        for model in args.models.split(","):
            h, w = (int(v) for v in size.split("x"))
            if model == "onnx" and h * w > 2_000_000:  # whole images only: memory grows with the image
                continue
            max_tiles = args.paper_max_tiles if model == "paper" else 0
            cmd = [sys.executable, __file__, "--child", f"{model}:{size}:{max_tiles}", "--tile", args.tile,
                   "--device", args.device, "--precision", args.precision,
                   "--repeat", str(args.repeat)] + chosen_model  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{model} at {size} failed:\n{result.stderr[-2000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{r['model']:>8} {size:>10}: {r['s_per_mp']:8.2f} s/MP, peak {r['peak_rss_mb']:7.0f} MB "
                  f"({r['note']})", flush=True)  # fmt: skip
    runtime = next(r["runtime"] for r in rows if "hardware" in r["runtime"])
    print(f"\n{runtime['hardware']}, {runtime['threads']} threads, {runtime['precision']}"
          f"{' + channels_last' if runtime['channels_last'] else ''}, torch {runtime['torch']}")  # fmt: skip
    from mirnet.zoo import DEFAULT_MODEL

    print(f"default: {args.model or DEFAULT_MODEL}; paper: the paper preset, random weights")
    print("| size | MP | default s/MP | paper s/MP | speed-up | default peak MB | paper peak MB | memory ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    onnx_rows, x8_rows = [], []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        case = {r["model"]: r for r in rows if (r["height"], r["width"]) == (h, w)}
        if {"default", "paper"} <= case.keys():
            d, p = case["default"], case["paper"]
            print(f"| {w}x{h} | {d['megapixels']:.2f} | {d['s_per_mp']:.2f} | {p['s_per_mp']:.1f} | "
                  f"x{p['s_per_mp'] / d['s_per_mp']:.0f} | {d['peak_rss_mb']:.0f} | {p['peak_rss_mb']:.0f} | "
                  f"x{p['peak_rss_mb'] / d['peak_rss_mb']:.1f} |")  # fmt: skip
        if {"default", "onnx"} <= case.keys():
            d, o = case["default"], case["onnx"]
            onnx_rows.append(f"| {w}x{h} | {d['s_per_mp']:.2f} | {o['s_per_mp']:.2f} | x{d['s_per_mp'] / o['s_per_mp']:.2f} "
                             f"| {d['peak_rss_mb']:.0f} | {o['peak_rss_mb']:.0f} |")  # fmt: skip
        if {"default", "x8"} <= case.keys():
            d, e = case["default"], case["x8"]
            paper = f"x{case['paper']['s_per_mp'] / e['s_per_mp']:.1f}" if "paper" in case else "-"
            x8_rows.append(f"| {w}x{h} | {d['s_per_mp']:.2f} | {e['s_per_mp']:.2f} | "
                           f"x{e['s_per_mp'] / d['s_per_mp']:.2f} | {paper} |")  # fmt: skip
    if x8_rows:
        print("\n| size | default s/MP | x8 self-ensemble s/MP | cost | paper / x8 |\n| --- | ---: | ---: | ---: | ---: |")
        print("\n".join(x8_rows))
    if onnx_rows:
        print("\n| size | default, torch s/MP | default, onnxruntime s/MP | onnxruntime speed-up | torch peak MB "
              "| onnxruntime peak MB |\n| --- | ---: | ---: | ---: | ---: | ---: |")
        print("\n".join(onnx_rows))
    pairs = []
    sizes = args.sizes.split(",") if args.side_by_side else []
    for size in sizes:
        h, w = (int(v) for v in size.split("x"))
        if h * w > 1_000_000:  # the paper preset on whole larger images takes minutes a run
            print(f"side by side: {size} skipped (whole images up to 1 MP)")
            continue
        cmd = [sys.executable, __file__, "--child", f"side-by-side:{size}",
               "--side-by-side", str(args.side_by_side), "--device", args.device, "--precision", args.precision,
               *chosen_model]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"side by side at {size} failed:\n{result.stderr[-2000:]}")
        pairs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    if pairs:
        print("\nSide by side in one process (each round: the paper preset once, then the default model for "
              "about as long)")
        print("| size | rounds | paper / default, median | range |\n| --- | ---: | ---: | --- |")
        for pair in pairs:
            print(f"| {pair['width']}x{pair['height']} | {pair['rounds']} | x{pair['ratio_median']:.0f} | "
                  f"x{pair['ratio_min']:.0f} - x{pair['ratio_max']:.0f} |")  # fmt: skip
    if args.json:  # before 2026-11-30 the side-by-side entries were appended to the list of runs
        from mirnet.files import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps({"runs": rows, "side_by_side": pairs}, indent=2))


if __name__ == "__main__":
    main()
