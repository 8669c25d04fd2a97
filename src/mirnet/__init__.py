"""mirnet: low-light image enhancement with MIRNet (Zamir et al., ECCV 2020)."""

from .config import PRESETS, MIRNetConfig, preset
from .model import MIRNet, count_macs, count_parameters, create_model
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
