"""Which compact MIRNet gives the most quality per CPU-minute? Train each candidate for the same
wall-clock budget on this machine, then tabulate and plot validation PSNR against training time.

Each candidate gets a cosine schedule sized to what it can do in the budget (its steps/s measured
first), so that every run ends its schedule instead of being cut mid-way. Runs that already finished
are kept, so the script resumes after an interruption.

    python scripts/compact_search.py --data ../shared/data/LOL/our485 --budget 360 \
        --out runs/compact-search --report docs/results/compact-search

The seeds' ablation (RRGs x MRBs) at the compact width, each scored once on eval15:

    python scripts/compact_search.py --set ablation --data ../shared/data/LOL/our485 --budget 600 \
        --out runs/ablation --report docs/results/ablation --eval ../shared/data/LOL/eval15
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from mirnet import count_parameters, create_model
from mirnet.model import count_macs
from mirnet.runtime import hardware_name, select_runtime
from mirnet.train import TrainConfig, train, train_step

# name -> MIRNetConfig overrides of the paper preset: width, streams, RRGs x MRBs.
CANDIDATES = {
    "c16-s2-1x1": dict(channels=16, num_streams=2, num_rrg=1, num_mrb=1),
    "c16-s3-1x1": dict(channels=16, num_streams=3, num_rrg=1, num_mrb=1),
    "c32-s2-1x1": dict(channels=32, num_streams=2, num_rrg=1, num_mrb=1),
    "c16-s3-1x2": dict(channels=16, num_streams=3, num_rrg=1, num_mrb=2),
}
# The seed project's ablation (RRGs x MRBs: 3x2 is the paper's) at the compact width.
ABLATION = {f"c16-s3-{r}x{m}": dict(channels=16, num_streams=3, num_rrg=r, num_mrb=m)
            for r, m in [(3, 2), (3, 3), (3, 1), (1, 1)]}  # fmt: skip
SETS = {"search": CANDIDATES, "ablation": ABLATION}


def steps_per_second(overrides: dict, crop: int, batch: int) -> float:
    runtime = select_runtime("cpu")
    model = runtime.prepare(create_model("paper", **overrides))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, crop, crop)
    for _ in range(2):
        train_step(model, optimizer, x, x, runtime)
    start, n = time.perf_counter(), 6
    for _ in range(n):
        train_step(model, optimizer, x, x, runtime)
    return n / (time.perf_counter() - start)


def score_once(folder: Path, overrides: dict, data: str) -> dict:
    """eval15 PSNR / SSIM / GT-mean of a run's best checkpoint (whole images, once)."""
    from mirnet import load_weights
    from mirnet.data import load_pairs
    from mirnet.evaluate import evaluate, model_method

    model = load_weights(folder / "best.safetensors")
    means = evaluate(load_pairs(data), {"mirnet": model_method(model, select_runtime("cpu"))}).means()
    mean = next(row for row in means if row["method"] == "mirnet")  # the input itself is scored too
    return {"eval15_psnr": round(mean["psnr"], 2), "eval15_ssim": round(mean["ssim"], 4),
            "eval15_gt_mean_psnr": round(mean["gt_mean_psnr"], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="runs/compact-search")
    parser.add_argument("--report", default="docs/results/compact-search")
    parser.add_argument("--budget", type=float, default=360.0, help="seconds of training per candidate")
    parser.add_argument("--epochs", type=int, default=6, help="validations per run")
    parser.add_argument("--val-limit", type=int, default=24)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default all)")
    parser.add_argument("--set", choices=list(SETS), default="search", help="search (default) or the seeds' ablation")
    parser.add_argument("--eval", help="also score each run's best checkpoint on this paired folder (LOL eval15)")
    args = parser.parse_args()

    out, report = Path(args.out), Path(args.report)
    rows = []
    for name, overrides in SETS[args.set].items():
        if args.only and name not in args.only:
            continue
        folder = out / name
        summary = folder / "summary.json"
        if not summary.exists():
            # Validation takes part of the budget too; 0.85 leaves room for it.
            sps = steps_per_second(overrides, 128, 4)
            steps_per_epoch = max(10, int(sps * args.budget * 0.85 / args.epochs))
            cfg = TrainConfig(data=args.data, out=str(folder), preset="paper", model_overrides=overrides,
                              val_limit=args.val_limit, augment=True, epochs=args.epochs,
                              steps_per_epoch=steps_per_epoch, lr=args.lr, schedule="cosine",
                              warmup_steps=steps_per_epoch // 4, device="cpu", progress=False)  # fmt: skip
            resume = (folder / "last.pt").exists()
            print(f"{name}: {sps:.2f} steps/s probed, {steps_per_epoch * args.epochs} steps", flush=True)
            train(cfg, resume=resume)
            model = create_model("paper", **overrides)
            history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            record = {"name": name, **overrides, "parameters": count_parameters(model),
                      "gmacs_600x400": round(count_macs(model, 400, 600) / 1e9, 2),
                      "steps": history[-1]["step"], "train_time_s": history[-1]["time"],
                      "best_val_psnr": round(max(r["val_psnr"] for r in history), 2),
                      "final_val_psnr": round(history[-1]["val_psnr"], 2),
                      "history": [{"time": r["time"], "val_psnr": r["val_psnr"]} for r in history],
                      "hardware": hardware_name(), "runtime": select_runtime("cpu").describe()}  # fmt: skip
            summary.write_text(json.dumps(record, indent=2))
        record = json.loads(summary.read_text())
        if args.eval and "eval15_psnr" not in record:
            record.update(score_once(folder, overrides, args.eval))
            summary.write_text(json.dumps(record, indent=2))
        rows.append(record)
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("history", "runtime")}), flush=True)

    report.mkdir(parents=True, exist_ok=True)
    keys = ["name", "channels", "num_streams", "num_rrg", "num_mrb", "parameters", "gmacs_600x400", "steps",
            "train_time_s", "best_val_psnr", "final_val_psnr"]  # fmt: skip
    if args.eval:
        keys += ["eval15_psnr", "eval15_ssim", "eval15_gt_mean_psnr"]
    with open(report / "candidates.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (report / "candidates.json").write_text(json.dumps(rows, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=100)
    for row in rows:
        times = [h["time"] / 60 for h in row["history"]]
        ax.plot(times, [h["val_psnr"] for h in row["history"]], marker="o", ms=3,
                label=f"{row['name']} ({row['parameters'] / 1e3:.0f}K params, {row['gmacs_600x400']} GMACs)")  # fmt: skip
    ax.set_xlabel(f"training wall-clock (min), {rows[0]['hardware'] if rows else ''}, 2 threads")
    ax.set_ylabel("validation PSNR (dB, our485 held-out)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "psnr-vs-time.png")
    print(f"wrote {report}/candidates.csv, candidates.json, psnr-vs-time.png")


if __name__ == "__main__":
    main()
