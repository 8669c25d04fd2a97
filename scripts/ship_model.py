"""Ship a training run as a bundled model: score its best checkpoint on eval15 (once), write the
package's weights file with its record, and the model card with its tables and figure.

    .venv/bin/python scripts/ship_model.py runs/lol-compact --name lol-compact \
        --eval ../shared/data/LOL/eval15 --command "./run.sh train ..."

Writes src/mirnet/pretrained/NAME.safetensors (fp32, or --half for fp16 storage) and
docs/models/NAME.md with docs/models/NAME/{evaluation.csv,json,md,comparison.png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mirnet import count_macs, count_parameters, load_weights, save_weights
from mirnet.data import load_pairs
from mirnet.evaluate import CONVENTIONS, comparison_figure, evaluate, model_method
from mirnet.runtime import select_runtime
from mirnet.weights import read_metadata

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (config.json, metrics.csv, best.safetensors)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--eval", required=True, type=Path, help="paired test folder (LOL eval15)")
    parser.add_argument("--command", required=True, help="the command that trained the run, for the card")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()

    config = json.loads((args.run / "config.json").read_text())
    history = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    weights = args.run / "best.safetensors"
    record = read_metadata(weights)
    model = load_weights(weights)
    best = max(history, key=lambda r: r["val_psnr"])

    out = ROOT / "docs" / "models" / args.name
    pairs = load_pairs(args.eval)
    runtime = select_runtime("cpu")
    result = evaluate(pairs, {"mirnet": model_method(model, runtime)}, keep_outputs=4, progress=True)
    written = result.write(out)
    # The seeds' figure 10: input | autocontrast | MIRNet | ground truth.
    from mirnet.baselines import BASELINES

    figure_eval = evaluate(pairs[:4], {"autocontrast": BASELINES["autocontrast"], "mirnet": model_method(model, runtime)},
                           keep_outputs=4, progress=False)  # fmt: skip
    comparison_figure(figure_eval, pairs[:4], ["input", "autocontrast", "mirnet"], out / "comparison.png", images=4)
    means = next(m for m in result.means() if m["method"] == "mirnet")

    params = count_parameters(model)
    macs = count_macs(model, 400, 600)
    train = config["train"]
    last = history[-1]
    metrics = {"eval15": {"psnr": round(means["psnr"], 2), "ssim": round(means["ssim"], 4),
                          "gt_mean_psnr": round(means["gt_mean_psnr"], 2)}}  # fmt: skip
    summary = (f"LOL our485 ({train['split']} split), {last['step']} steps in {last['time'] / 60:.0f} min on "
               f"{config['runtime']['hardware']} ({config['runtime']['precision']}); best validation epoch "
               f"{best['epoch']}")  # fmt: skip
    meta = {"name": args.name, "parameters": params, "gmacs_600x400": round(macs / 1e9, 2), "metrics": metrics,
            "training": {**record.get("training", {}), "summary": summary, "command": args.command}}  # fmt: skip
    target = ROOT / "src" / "mirnet" / "pretrained" / f"{args.name}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, target, metadata=meta)
    check = load_weights(target)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        # channels_last (left by evaluation) vs contiguous layout: equal up to float rounding
        assert torch.allclose(check(x), model(x), atol=1e-5), "shipped weights do not reproduce the run's model"

    rows = "\n".join(
        f"| {r['epoch']} | {r['step']} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | {r['val_psnr']:.2f} | "
        f"{r['lr']:.2e} | {r['time'] / 60:.1f} |"
        for r in history
    )
    per_image = result.to_markdown(per_image=True)
    cfg = model.config
    card = f"""# {args.title or args.name}

A MIRNet of the paper's architecture at a compact size, trained from scratch on LOL on a
laptop-class CPU. Shipped in the package as `src/mirnet/pretrained/{args.name}.safetensors`
({target.stat().st_size / 1e6:.2f} MB, fp32); `mirnet.load_model("{args.name}")`.

## Model

| | |
| --- | --- |
| architecture | MIRNet: {cfg.num_rrg} RRG x {cfg.num_mrb} MRB, {cfg.num_streams} streams, {cfg.daus_per_stream} DAUs per stream, width {cfg.channels}, official weight sharing {'on' if cfg.share_weights else 'off'} |
| parameters | {params:,} |
| cost | {macs / 1e9:.2f} GMACs per 600x400 image |
| configuration | `{json.dumps(cfg.to_dict())}` |

## Training

| | |
| --- | --- |
| data | LOL `our485`, split `{train['split']}` ({len(config['train_pairs'])} training pairs, {train['val_pairs']} held out by scene; validation on the first {train['val_limit'] or len(config['val_pairs'])}) |
| recipe | Charbonnier loss, Adam lr {train['lr']:g}, {train['schedule']} schedule{f" with {train['warmup_steps']} warm-up steps" if train['schedule'] == 'cosine' else ''}, batch {train['batch_size']} x {train['crop']}x{train['crop']} crops{', 8 flips/rotations' if train['augment'] else ''} |
| steps | {last['step']} ({train['epochs']} epochs of {train['steps_per_epoch']} steps) |
| wall time | {last['time'] / 60:.1f} min (validation included) |
| hardware | {config['runtime']['hardware']}, {config['runtime']['threads']} threads, torch {config['runtime']['torch']}, {config['runtime']['precision']}{' + channels_last' if config['runtime']['channels_last'] else ''} (CPU capability {config['runtime']['cpu_capability']}) |
| checkpoint | best validation PSNR: epoch {best['epoch']}, step {best['step']}, {best['val_psnr']:.2f} dB |

Reproduce the weights:

```bash
{args.command}
```

Per-epoch record (validation PSNR on held-out our485 scenes, never eval15):

| epoch | step | train loss | val loss | val PSNR (dB) | lr | time (min) |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

![validation PSNR]({args.name}/psnr.png)

## LOL eval15 (scored once, after selection on validation)

{CONVENTIONS}

Mean: **PSNR {means['psnr']:.2f} dB, SSIM {means['ssim']:.4f}** (GT-mean PSNR {means['gt_mean_psnr']:.2f} dB).

{per_image}
![input | autocontrast | mirnet | ground truth]({args.name}/comparison.png)

Reproduce the scores (`{', '.join(p.name for p in written)}` in `docs/models/{args.name}/`):

```bash
./run.sh evaluate --data ../shared/data/LOL/eval15 --model {args.name} --label mirnet --out runs/eval15-{args.name}
```
"""
    import shutil

    shutil.copy(args.run / "psnr.png", out / "psnr.png")
    (ROOT / "docs" / "models" / f"{args.name}.md").write_text(card)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
