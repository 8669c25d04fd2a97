"""Scoring enhancement methods on paired images: per-image tables, means, and a comparison figure.

A method is any function from an HxWx3 uint8 RGB image to another; MIRNet models become one
through model_method(). Metrics follow mirnet.metrics (8-bit RGB, peak 255; SSIM per channel,
averaged; GT-mean PSNR labelled separately).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import Pair, natural_key, to_tensor, to_uint8
from .enhance import self_ensemble as ensemble_of
from .files import atomic_output
from .metrics import score
from .runtime import Runtime, select_runtime

Method = Callable[[np.ndarray], np.ndarray]
METRICS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("gt_mean_psnr", "GT-mean PSNR (dB)"))
CONVENTIONS = (
    "PSNR on 8-bit RGB, peak 255; SSIM (Wang et al., 11x11 Gaussian window, sigma 1.5) per RGB channel, "
    "averaged, data range 255; GT-mean PSNR rescales the output's mean grey level to the ground truth's "
    "first (reported separately, not a headline number)."
)


def model_forward(model: torch.nn.Module,
                  runtime: Runtime | None = None) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """A MIRNet as a function from a (N, 3, H, W) batch in [0, 1] to its fp32 output clamped to
    [0, 1], before any rounding (what model_method and output ensembles build on).

    Under autocast it runs on a copy of the model with its weights in the autocast dtype, as the
    Enhancer keeps them (Runtime.prepare_for_inference): the caller's model stays fp32, and later
    changes to it do not reach the function."""
    runtime = runtime or select_runtime()
    model = runtime.prepare_for_inference(model).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), runtime.autocast():
            return model(runtime.input(x)).float().clamp(0, 1)

    return forward


def model_method(model: torch.nn.Module, runtime: Runtime | None = None,
                 self_ensemble: bool = False) -> Method:  # fmt: skip
    """A MIRNet as a method: whole-image inference (model_forward), output rounded to 8 bits
    (self_ensemble: the mean of its 8 flipped/rotated views, mirnet.enhance.self_ensemble)."""
    forward = model_forward(model, runtime)

    def enhance(image: np.ndarray) -> np.ndarray:
        x = to_tensor(image)[None]
        return to_uint8((ensemble_of(forward, x) if self_ensemble else forward(x))[0])

    return enhance


@dataclass
class Evaluation:
    rows: list[dict]  # one per (method, image): method, image, psnr, ssim, gt_mean_psnr
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)  # method -> image -> output

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(row["method"] for row in self.rows))

    def means(self) -> list[dict]:
        out = []
        for method in self.methods:
            rows = [r for r in self.rows if r["method"] == method]
            out.append({"method": method, "images": len(rows),
                        **{key: float(np.mean([r[key] for r in rows])) for key, _ in METRICS}})  # fmt: skip
        return out

    @classmethod
    def read_csv(cls, path: str | Path) -> Evaluation:
        """The rows of an evaluation.csv that `write` made (no outputs): to recompute means over subsets."""
        try:
            with open(path, newline="") as f:
                rows = [{"method": r["method"], "image": r["image"], **{k: float(r[k]) for k, _ in METRICS}}
                        for r in csv.DictReader(f)]  # fmt: skip
        except OSError as error:
            raise ValueError(f"{path}: cannot be read ({error.strerror})") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not an evaluation.csv ({type(error).__name__}: {error})") from None
        return cls(rows)

    def to_json(self) -> dict:
        """Plain JSON: a perfect score's infinite PSNR becomes null (JSON has no Infinity)."""
        return _finite({"conventions": CONVENTIONS, "means": self.means(), "images": self.rows})

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["method", "image", *(key for key, _ in METRICS)])
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def to_markdown(self, per_image: bool = True) -> str:
        lines = ["| method | " + " | ".join(label for _, label in METRICS) + " |",
                 "| --- |" + " ---: |" * len(METRICS)]  # fmt: skip
        for row in self.means():
            lines.append(f"| {row['method']} | " + " | ".join(_fmt(key, row[key]) for key, _ in METRICS) + " |")
        if per_image:
            lines += ["", "| image | method | " + " | ".join(label for _, label in METRICS) + " |",
                      "| --- | --- |" + " ---: |" * len(METRICS)]  # fmt: skip
            for row in sorted(self.rows, key=lambda r: (natural_key(r["image"]), self.methods.index(r["method"]))):
                lines.append(f"| {row['image']} | {row['method']} | "
                             + " | ".join(_fmt(key, row[key]) for key, _ in METRICS) + " |")  # fmt: skip
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path) -> list[Path]:
        """evaluation.csv, evaluation.json and evaluation.md under folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        strict_json = json.dumps(self.to_json(), indent=2, allow_nan=False)
        for name, text in [("evaluation.csv", self.to_csv()), ("evaluation.json", strict_json),
                           ("evaluation.md", self.to_markdown())]:  # fmt: skip
            with atomic_output(folder / name) as tmp:
                tmp.write_text(text)
            written.append(folder / name)
        return written


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _fmt(key: str, value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:.4f}" if key == "ssim" else f"{value:.2f}"


def evaluate(pairs: list[Pair], methods: dict[str, Method], keep_outputs: int = 0,
             progress: bool = False) -> Evaluation:  # fmt: skip
    """Score every method on every pair; the input itself is scored as the method "input".

    keep_outputs: how many of the first images keep their outputs (for comparison_figure).
    """
    if "input" in methods:
        raise ValueError("'input' names the low-light image itself in the tables; choose another label")
    methods = {"input": lambda image: image, **methods}
    rows, outputs = [], {name: {} for name in methods}
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, unit="image", leave=False)
    for index, pair in enumerate(iterator):
        for name, method in methods.items():
            output = method(pair.low)
            rows.append({"method": name, "image": pair.stem, **score(output, pair.high)})
            if index < keep_outputs:
                outputs[name][pair.stem] = output
    return Evaluation(rows, outputs)


def comparison_figure(evaluation: Evaluation, pairs: list[Pair], columns: list[str], path: str | Path,
                      images: int = 4) -> Path:  # fmt: skip
    """A grid like the seeds' report: a row per image, columns of methods then the ground truth,
    each panel titled with its PSNR against the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in pairs if all(p.stem in evaluation.outputs.get(c, {}) for c in columns)][:images]
    if not shown:
        raise ValueError("no image has outputs kept for every column (evaluate with keep_outputs > 0)")
    psnr_of = {(r["method"], r["image"]): r["psnr"] for r in evaluation.rows}
    cols = len(columns) + 1
    fig, axes = plt.subplots(len(shown), cols, figsize=(3.2 * cols, 2.3 * len(shown)), dpi=80, squeeze=False)
    for row, pair in zip(axes, shown):
        for ax, column in zip(row, columns):
            ax.imshow(evaluation.outputs[column][pair.stem])
            ax.set_title(f"{column}: {psnr_of[(column, pair.stem)]:.2f} dB", fontsize=9)
        row[-1].imshow(pair.high)
        row[-1].set_title(f"ground truth ({pair.stem})", fontsize=9)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
