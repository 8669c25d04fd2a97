"""Every whole-run candidate for the default's recipe in one table and one plot: held-out PSNR against
training time, so that the choice is visible.

    .venv/bin/python scripts/candidates.py docs/results/candidates/candidates.csv \
        --out docs/results/candidates

The list (a CSV, one run a row) names for each run its architecture (MIRNetConfig overrides of the
`compact` preset), the CPU it trained on, its stages' metrics.csv files, the minutes it was stopped
(documented where its `paused_source` says; not in the files), the printout that scored it on the 65
held-out pairs (`scripts/compare_on_validation.py` or `scripts/scene_overlap.py`) with the name of its
row there, and optionally its eval15 evaluation.csv. Parameters and GMACs (600x400) are counted here;
training time is the sum of the stages' clocks less the minutes stopped. Runs on different CPUs
differ in speed by up to 2x, so the plot marks each run's CPU. Writes candidates.md and
candidates.png under --out.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from compare_recipes import read_run  # a sibling script: scripts/ is on the path when this one runs

from mirnet import count_macs, count_parameters, create_model
from mirnet.config import preset
from mirnet.evaluate import Evaluation
from mirnet.files import atomic_output


def held_out_scores(printout: Path, row: str) -> tuple[float, float]:
    """(PSNR, SSIM) of the row named `row` in a markdown printout: a table with PSNR (dB) and SSIM
    columns, or scene_overlap.py's by-scene table, whose first cell holds "PSNR / SSIM / GT-mean"."""
    header = None
    for line in printout.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| model |"):
            header = cells
        elif header and cells[0] == f"`{row}`":
            if "PSNR (dB)" in header:
                return float(cells[header.index("PSNR (dB)")]), float(cells[header.index("SSIM")])
            psnr, ssim, _ = cells[1].split(" / ")
            return float(psnr), float(ssim)
    raise SystemExit(f"candidates.py: error: {printout}: no row `{row}`")


def eval15_scores(path: str) -> tuple[float, float] | None:
    if not path:
        return None
    (mean,) = [m for m in Evaluation.read_csv(path).means() if m["method"] != "input"]
    return mean["psnr"], mean["ssim"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("list", type=Path, help="the candidates' CSV")
    parser.add_argument("--out", type=Path, default=Path("docs/results/candidates"))
    args = parser.parse_args()

    with open(args.list, newline="") as f:
        entries = list(csv.DictReader(f))
    runs, sizes = [], {}
    for e in entries:
        overrides = json.loads(e["architecture"])
        key = json.dumps(overrides, sort_keys=True)
        if key not in sizes:
            model = create_model(preset("compact", **overrides))
            sizes[key] = count_parameters(model), count_macs(model, 400, 600) / 1e9
        # The stages' clocks summed (read_run makes time cumulative over stages), less the minutes stopped.
        minutes = read_run(e["stages"].split())[-1]["time"] / 60 - float(e["paused_min"] or 0)
        psnr, ssim = held_out_scores(Path(e["scores"]), e["row"])
        runs.append({**e, "params": sizes[key][0], "gmacs": sizes[key][1], "minutes": minutes, "psnr": psnr,
                     "ssim": ssim, "eval15": eval15_scores(e["eval15"])})  # fmt: skip
    runs.sort(key=lambda r: -r["psnr"])

    lines = ["Whole-run candidates for the default's recipe, 420 training pairs each, scored on the same 65",
             f"held-out pairs of our485 (`scripts/candidates.py {args.list}`). Time: the stages' clocks less",
             "the minutes stopped, validation included, on each run's own CPU. eval15: scored once, for the",
             "record.", "",
             "| run | CPU | params | GMACs | time (min) | held-out PSNR / SSIM | eval15 PSNR / SSIM |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in runs:
        e15 = f"{r['eval15'][0]:.2f} / {r['eval15'][1]:.4f}" if r["eval15"] else "-"
        lines.append(f"| {r['label']} | {r['cpu']} | {r['params']:,} | {r['gmacs']:.1f} | {r['minutes']:.1f} "
                     f"| {r['psnr']:.2f} / {r['ssim']:.4f} | {e15} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpus = list(dict.fromkeys(r["cpu"] for r in runs))
    colors = {cpu: f"C{i}" for i, cpu in enumerate(cpus)}
    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    for r in runs:
        streams = json.loads(r["architecture"]).get("num_streams", 3)
        ax.scatter(r["minutes"], r["psnr"], color=colors[r["cpu"]], marker="o" if streams == 3 else "s", s=40)
        ax.annotate(r["label"], (r["minutes"], r["psnr"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # fmt: skip
    ax.axvline(120, color="grey", linestyle="--", linewidth=1)
    ax.text(121, ax.get_ylim()[0] + 0.02, "2 hours", fontsize=8, color="grey")
    for cpu in cpus:
        ax.scatter([], [], color=colors[cpu], label=cpu)
    ax.scatter([], [], color="black", marker="o", label="3 streams")
    ax.scatter([], [], color="black", marker="s", label="2 streams")
    ax.set(xlabel="training time on its CPU (min)", ylabel="PSNR on 65 held-out our485 pairs (dB)",
           title="Candidates for the default: held-out quality against training time")  # fmt: skip
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(alpha=0.3)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out / "candidates.png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    with atomic_output(args.out / "candidates.md") as tmp:
        tmp.write_text(text)
    print(f"wrote {args.out / 'candidates.md'}, {args.out / 'candidates.png'}")


if __name__ == "__main__":
    main()
