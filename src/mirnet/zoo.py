"""Pretrained models: those bundled in the package, described by data, and loading by name or path.

Bundled weights live in mirnet/pretrained/ as safetensors files whose header carries the model's
configuration, how it was trained and what it scored. Models of one's own can be installed by
dropping a mirnet .safetensors file into the models folder ($MIRNET_HOME, else
~/.local/share/mirnet/models); they are then known by their file's stem.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .config import MIRNetConfig
from .model import MIRNet, count_parameters
from .weights import WeightsError, latest_weights, load_official_checkpoint, load_weights, read_metadata


@dataclass(frozen=True)
class BundledModel:
    name: str
    file: str  # under mirnet/pretrained/
    description: str


BUNDLED: dict[str, BundledModel] = {
    model.name: model
    for model in [
        BundledModel("lol-compact", "lol-compact.safetensors",
                     "compact MIRNet with two streams, trained on LOL from scratch in under 2 hours on a 2-core CPU (docs/models/lol-compact.md)"),  # fmt: skip
        BundledModel("lol-compact-2h", "lol-compact-2h.safetensors",
                     "compact MIRNet with two streams, trained with the steps of 2 hours on the slowest 2-core CPU seen (docs/models/lol-compact-2h.md)"),  # fmt: skip
        BundledModel("lol-micro", "lol-micro.safetensors",
                     "micro MIRNet for microcontrollers, trained on LOL 32x32 tiles (docs/models/lol-micro.md)"),  # fmt: skip
    ]
}
DEFAULT_MODEL = "lol-compact"


def bundled_path(name: str) -> Path:
    entry = BUNDLED[name]
    return Path(str(resources.files("mirnet") / "pretrained" / entry.file))


def models_folder() -> Path:
    """Where installed models are looked for: $MIRNET_HOME, else ~/.local/share/mirnet/models."""
    home = os.environ.get("MIRNET_HOME")
    return Path(home) if home else Path.home() / ".local" / "share" / "mirnet" / "models"


def installed_models() -> dict[str, Path]:
    folder = models_folder()
    if not folder.is_dir():
        return {}
    # Any case of the suffix (a file copied from Windows as X.SAFETENSORS), as load_model reads it.
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() == ".safetensors")
    return {path.stem: path for path in files if path.stem not in BUNDLED}


def list_models() -> list[dict]:
    """Every known model with where it lives and the record in its weights file (config, training, metrics)."""
    entries = [(name, bundled_path(name), "bundled", BUNDLED[name].description) for name in BUNDLED]
    entries += [(name, path, "installed", "") for name, path in installed_models().items()]
    models = []
    for name, path, kind, description in entries:
        try:
            record = _described(read_metadata(path))
        except WeightsError as error:
            record = {"error": str(error)}
        except (TypeError, ValueError) as error:  # one odd file must not cost the whole listing
            record = {"error": f"{path}: its mirnet record cannot be read ({error})"}
        # The name it loads by (a file's stem) over the name recorded in the file when it was shipped.
        models.append({**record, "name": name, "kind": kind, "path": str(path),
                       "default": name == DEFAULT_MODEL, "description": description})  # fmt: skip
    return models


def _described(record: dict) -> dict:
    """A weights file's record with its config completed as loading completes it; TypeError or
    ValueError if a part that `mirnet models` describes is of the wrong kind."""
    if not isinstance(record["config"], dict):
        raise TypeError("its config is not a mapping")
    config = MIRNetConfig.from_dict(record["config"])
    for key in ("training", "metrics"):
        if not isinstance(record.get(key) or {}, dict):
            raise TypeError(f"its {key} is not a mapping")
    if not all(isinstance(scores, dict) for scores in (record.get("metrics") or {}).values()):
        raise TypeError("its metrics are not mappings of scores")
    if "parameters" not in record:  # e.g. a converted official checkpoint: counted on the meta device
        with torch.device("meta"):
            record = {**record, "parameters": count_parameters(MIRNet(config))}
    return {**record, "config": dataclasses.asdict(config)}


def model_file(name_or_path: str | Path | None = None) -> Path:
    """The file that `load_model(name_or_path)` reads (writers check it to never overwrite their input)."""
    text = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    if text in BUNDLED:
        return bundled_path(text)
    return installed_models().get(text, Path(text))


def is_run_checkpoint(path: Path) -> bool:
    """Whether path is a training run's last.pt: beside the config.json `mirnet train` writes."""
    config = path.parent / "config.json"
    try:
        record = json.loads(config.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as error:
        if path.name != "last.pt":  # another tool's .pt beside another tool's config.json
            return False
        # The name `mirnet train` writes: read as an official checkpoint, its error would mislead.
        raise WeightsError(f"{path}: the config.json beside it cannot be read ({error})") from None
    return isinstance(record, dict) and "train" in record and "model" in record


def load_model(name_or_path: str | Path | None = None) -> MIRNet:
    """A model in eval mode: the default (None), a bundled or installed model's name, a mirnet
    .safetensors file, a training run's last.pt (beside its config.json), or an official MIRNet
    .pth checkpoint."""
    text = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    path = model_file(text)
    if text in BUNDLED and not path.exists():
        raise WeightsError(f"{path}: the bundled model {text!r} is missing from this installation")
    suffix = path.suffix.lower()  # X.SAFETENSORS as x.safetensors, as the other readers take them
    if suffix == ".safetensors":
        return load_weights(path)
    if suffix == ".pt" and is_run_checkpoint(path):
        return latest_weights(path)
    if suffix in (".pth", ".pt", ".ckpt"):
        return load_official_checkpoint(path)
    names = ", ".join([*BUNDLED, *installed_models()]) or "none"
    raise WeightsError(f"{text}: neither a known model ({names}) nor a .safetensors or official .pth file")
