"""Shared fixtures: small synthetic paired data (dark, noisy renderings of smooth colour textures)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_pairs(root: Path, count: int = 6, size: tuple[int, int] = (48, 64), seed: int = 0,
               suffix: str = ".png") -> Path:  # fmt: skip
    """ROOT/low and ROOT/high with `count` pairs: a smooth colour texture and a darkened noisy copy."""
    rng = np.random.default_rng(seed)
    h, w = size
    (root / "low").mkdir(parents=True, exist_ok=True)
    (root / "high").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        channels = []
        for _ in range(3):
            fx, fy, phase = rng.uniform(1, 6, size=2).tolist() + [rng.uniform(0, 6.28)]
            channels.append(0.5 + 0.4 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase))
        high = np.stack(channels, axis=-1)
        low = high * 0.15 + rng.normal(0, 0.01, size=high.shape)  # one exposure: learnable by tiny models
        Image.fromarray((np.clip(high, 0, 1) * 255).round().astype(np.uint8)).save(root / "high" / f"{i}{suffix}")
        Image.fromarray((np.clip(low, 0, 1) * 255).round().astype(np.uint8)).save(root / "low" / f"{i}{suffix}")
    return root


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    """Run scripts/NAME with this interpreter, capturing its output as text."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def paired(tmp_path) -> Path:
    return make_pairs(tmp_path / "pairs")
