"""Pretrained models: those bundled in the package, described by data, and loading by name or path."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .model import MIRNet
from .weights import WeightsError, load_official_checkpoint, load_weights


@dataclass(frozen=True)
class BundledModel:
    name: str
    file: str  # under mirnet/pretrained/
    description: str


# Filled by the trained-model work; each entry is one safetensors file shipped in the package.
BUNDLED: dict[str, BundledModel] = {}


def bundled_path(name: str) -> Path:
    entry = BUNDLED[name]
    return Path(str(resources.files("mirnet") / "pretrained" / entry.file))


def load_model(name_or_path: str | Path) -> MIRNet:
    """A model in eval mode: a bundled model's name, a mirnet .safetensors file, or an official .pth."""
    text = str(name_or_path)
    if text in BUNDLED:
        return load_weights(bundled_path(text))
    path = Path(text)
    if path.suffix == ".safetensors":
        return load_weights(path)
    if path.suffix in (".pth", ".pt", ".ckpt"):
        return load_official_checkpoint(path)
    names = ", ".join(BUNDLED) or "none bundled yet"
    raise WeightsError(f"{text}: neither a bundled model ({names}) nor a .safetensors or official .pth file")
