"""Which second training stage helps the compact model most? Each candidate starts from stage 1's
best weights (the lol-compact recipe on 128x128 crops) and trains for about 15 minutes of this CPU;
the table and plot compare validation PSNR and SSIM on the same 64 held-out our485 pairs, with
stage 1 itself as the first row. Never eval15: the winner is scored on it once, when it is shipped.

    .venv/bin/python scripts/stage2_search.py --data ../shared/data/LOL/our485 \
        --init runs/lol-compact/stage1/best.safetensors --out runs/stage2 --report docs/results/stage2

Finished candidates are kept and interrupted ones resume, so the script can be run again.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from mirnet import load_model
from mirnet.runtime import hardware_name, select_runtime
from mirnet.train import TrainConfig, datasets, train, validate

# name -> TrainConfig fields. Equal wall-clock: 1,350 steps of one 256x256 crop or 600 of one 384x384.
CANDIDATES = {
    "crop256": dict(crop=256, batch_size=1, epochs=3, steps_per_epoch=450),
    "crop256-ssim": dict(crop=256, batch_size=1, epochs=3, steps_per_epoch=450, ssim_weight=0.2),
    "crop384-ssim": dict(crop=384, batch_size=1, epochs=3, steps_per_epoch=200, ssim_weight=0.2),
    "crop256-ssim05": dict(crop=256, batch_size=1, epochs=3, steps_per_epoch=450, ssim_weight=0.5),
}
COMMON = dict(preset="compact", split="seeds", val_pairs=185, val_limit=64, augment=True, lr=2e-4,
              schedule="cosine", warmup_steps=50, time_budget=1000.0, progress=False)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--init", required=True, help="stage 1's best weights")
    parser.add_argument("--out", default="runs/stage2")
    parser.add_argument("--report", default="docs/results/stage2")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default all)")
    args = parser.parse_args()

    out, report = Path(args.out), Path(args.report)
    runtime = select_runtime("cpu")
    configs = {name: TrainConfig(data=args.data, out=str(out / name), init=args.init, **COMMON, **fields)
               for name, fields in CANDIDATES.items() if not args.only or name in args.only}  # fmt: skip

    # Stage 1 on the candidates' validation pairs: where every candidate starts.
    _, val_pairs = datasets(next(iter(configs.values())))
    start = validate(runtime.prepare(load_model(args.init)), val_pairs, runtime)
    rows = [{"name": "stage 1 only", "steps": 0, "time_s": 0.0, "final_val_psnr": round(start["val_psnr"], 2),
             "final_val_ssim": round(start["val_ssim"], 4), "history": [{"time": 0.0, **start}]}]  # fmt: skip
    for name, cfg in configs.items():
        train(cfg, resume=(Path(cfg.out) / "last.pt").exists())
        history = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
        last = history[-1]
        rows.append({"name": name, "steps": last["step"], "time_s": last["time"],
                     "final_val_psnr": round(last["val_psnr"], 2), "final_val_ssim": round(last["val_ssim"], 4),
                     "history": [{"time": 0.0, **start}, *history],
                     **CANDIDATES[name]})  # fmt: skip
        print(f"{name}: val PSNR {last['val_psnr']:.2f} dB, SSIM {last['val_ssim']:.4f}", flush=True)

    report.mkdir(parents=True, exist_ok=True)
    record = {"init": args.init, "validation_pairs": len(val_pairs), "hardware": hardware_name(),
              "runtime": runtime.describe(), "common": COMMON, "rows": rows}  # fmt: skip
    (report / "candidates.json").write_text(json.dumps(record, indent=2) + "\n")
    keys = ["name", "crop", "batch_size", "ssim_weight", "steps", "time_s", "final_val_psnr", "final_val_ssim"]
    with open(report / "candidates.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for row in rows[1:]:
        times = [h["time"] / 60 for h in row["history"]]
        for ax, key in zip(axes, ("val_psnr", "val_ssim")):
            ax.plot(times, [h[key] for h in row["history"]], marker="o", ms=3, label=row["name"])
    for ax, label in zip(axes, ("validation PSNR (dB)", "validation SSIM")):
        ax.set_xlabel(f"stage 2 wall-clock (min), {hardware_name()}, 2 threads")
        ax.set_ylabel(f"{label}, {len(val_pairs)} held-out our485 pairs")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "val-vs-time.png")
    print(f"wrote {report}/candidates.csv, candidates.json, val-vs-time.png")


if __name__ == "__main__":
    main()
