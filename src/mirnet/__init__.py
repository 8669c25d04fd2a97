"""mirnet: low-light image enhancement with MIRNet (Zamir et al., ECCV 2020)."""

from . import zoo
from .config import PRESETS, MIRNetConfig, preset
from .enhance import Enhancer, ImageError, enhance, enhance_files
from .model import MIRNet, count_macs, count_parameters, create_model
from .zoo import list_models, load_model
from .weights import (
    WeightsError,
    load_official_checkpoint,
    load_weights,
    official_state_dict,
    save_official_checkpoint,
    save_weights,
)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "Enhancer",
    "ImageError",
    "enhance",
    "enhance_files",
    "list_models",
    "load_model",
    "MIRNet",
    "MIRNetConfig",
    "WeightsError",
    "count_macs",
    "count_parameters",
    "create_model",
    "load_official_checkpoint",
    "load_weights",
    "official_state_dict",
    "preset",
    "save_official_checkpoint",
    "save_weights",
]
