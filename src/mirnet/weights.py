"""Saving and loading weights: our safetensors files, and checkpoints of the official MIRNet code."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from .config import MIRNetConfig
from .errors import first_line
from .files import atomic_output
from .model import DAU, MRB, SKFF, BlurPool, MIRNet


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------
# Our own format: safetensors, with the configuration and any caller's metadata in the header.


def save_weights(model: MIRNet, path: str | Path, metadata: dict | None = None) -> None:
    """Write the model's weights and configuration to a safetensors file, atomically."""
    record = {**(metadata or {}), "config": model.config.to_dict()}
    # One JSON record under our own key: save_model adds header entries of its own for shared tensors.
    header = {"format": "mirnet", "mirnet": json.dumps(record)}
    # A contiguous CPU copy (deepcopy keeps the sharing): safetensors cannot save channels_last tensors.
    model = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
    with atomic_output(path) as tmp:
        # save_model (unlike save_file) stores each shared tensor once.
        save_model(model, str(tmp), metadata=header)


def read_metadata(path: str | Path) -> dict:
    """The configuration and metadata stored in a safetensors weights file, decoded."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a safetensors weights file ({error})") from None
    try:
        record = json.loads(header["mirnet"])
        record["config"]
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{path}: a safetensors file, but not mirnet weights (no mirnet config in its header)") from None
    return record


def load_weights(path: str | Path) -> MIRNet:
    """A model rebuilt from a safetensors file written by save_weights, in eval mode."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        model = MIRNet(MIRNetConfig.from_dict(meta["config"]))
        load_model(model, str(path))
    except (SafetensorError, RuntimeError, ValueError, TypeError) as error:
        # torch lists every tensor that does not fit, a line each: the first says what is wrong.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        problem = lines[-1] if len(lines) == 1 else lines[1] if len(lines) > 1 else type(error).__name__
        more = f"; and {len(lines) - 2} more" if len(lines) > 2 else ""
        raise WeightsError(f"{path}: weights do not fit their own configuration ({problem[:200]}{more})") from None
    return model.eval()


# ---------------------------------------------------------------------------------------------
# The official format (swz30/MIRNet): torch.save({"epoch", "state_dict", "optimizer"}), the
# state_dict keyed by the official module tree, possibly behind DataParallel's "module." prefix.
#
# Official tree -> ours, inside each MRB ("MSRB" there):
#   blocks.{j}.{i}                 -> daus[j][i]
#   down.{C_k}_{2**(j-k)}          -> exchange[0]["{k}to{j}"] (and stem[j-1] when j = k + 1)
#   up.{C_k}_{2**(k-j)}            -> exchange[0]["{k}to{j}"]
#   last_up.{k}                    -> to_full[k-1]
#   selective_kernel.{j}           -> fusions[0][j] (and fuse_out when j = 0)
# The official tree exists only for the shared layout with at least two DAUs per stream.

_DAU_NAMES = {
    "conv1": "body.0",
    "act": "body.1",
    "conv2": "body.2",
    "spatial.conv": "SA.spatial.conv",
    "channel.squeeze": "CA.conv_du.0",
    "channel.excite": "CA.conv_du.2",
    "fuse": "conv1x1",
}


def _official_key(module: nn.Module, local: str) -> str:
    """The official name of parameter `local` of one of our modules (relative to the module)."""
    if isinstance(module, DAU):
        owner, _, leaf = local.rpartition(".")
        return f"{_DAU_NAMES[owner]}.{leaf}"
    if isinstance(module, SKFF):
        return re.sub(r"^squeeze\.", "conv_du.", re.sub(r"^select\.", "fcs.", local))
    if isinstance(module, nn.Sequential):  # resampler: the official DownSample/UpSample wrap it in .body
        return "body." + local.replace("bottom.", "bot.")
    return local


def _official_modules(model: MIRNet) -> list[tuple[str, nn.Module]]:
    """(official key prefix, our module) for every module whose parameters the official tree holds."""
    cfg = model.config
    if not cfg.share_weights or cfg.daus_per_stream < 2:
        raise WeightsError(
            "the official layout exists only for share_weights=True and daus_per_stream >= 2, "
            f"not for {cfg}"
        )
    pairs: list[tuple[str, nn.Module]] = [("conv_in.", model.conv_in), ("conv_out.", model.conv_out)]
    widths = [cfg.channels * 2**j for j in range(cfg.num_streams)]
    for r, rrg in enumerate(model.rrgs):
        pairs.append((f"body.{r}.body.{cfg.num_mrb}.", rrg.conv))
        for b, mrb in enumerate(rrg.mrbs):
            assert isinstance(mrb, MRB)
            p = f"body.{r}.body.{b}."
            pairs.append((p + "conv_out.", mrb.conv_out))
            for j, column in enumerate(mrb.daus):
                pairs.extend((f"{p}blocks.{j}.{i}.", dau) for i, dau in enumerate(column))
                pairs.append((f"{p}selective_kernel.{j}.", mrb.fusions[0][j]))
            for k, up in enumerate(mrb.to_full, start=1):
                pairs.append((f"{p}last_up.{k}.", up))
            for name, module in mrb.exchange[0].items():
                k, j = (int(s) for s in name.split("to"))
                kind = "down" if j > k else "up"
                pairs.append((f"{p}{kind}.{widths[k]}_{2 ** abs(j - k)}.", module))
    return pairs


def official_state_dict(model: MIRNet) -> dict[str, Tensor]:
    """The model's weights under the official code's keys, constant blur filters (`filt`) included."""
    state: dict[str, Tensor] = {}
    for prefix, module in _official_modules(model):
        for local, tensor in module.state_dict().items():
            state[prefix + _official_key(module, local)] = tensor.detach().clone()
        for name, sub in module.named_modules():
            if isinstance(sub, BlurPool):
                state[prefix + _official_key(module, f"{name}.filt")] = sub.kernel.detach().clone()
    return state


def save_official_checkpoint(model: MIRNet, path: str | Path, epoch: int = 0) -> None:
    """Write a checkpoint in the official training code's format (optimizer state left empty)."""
    with atomic_output(path) as tmp:
        torch.save({"epoch": epoch, "state_dict": official_state_dict(model), "optimizer": {}}, tmp)


def _infer_config(state: dict[str, Tensor], path: Path) -> MIRNetConfig:
    """The configuration of an official model, read off its state_dict keys and shapes."""

    def count(pattern: str) -> int:
        return len({m.group(1) for key in state if (m := re.match(pattern, key))})

    if "conv_in.weight" not in state:
        raise WeightsError(f"{path}: not a MIRNet checkpoint (no conv_in.weight in its state_dict)")
    if state["conv_in.weight"].ndim != 4:
        raise WeightsError(f"{path}: not a MIRNet checkpoint (conv_in.weight is not a 2-D convolution's)")
    channels, in_channels = state["conv_in.weight"].shape[:2]
    if in_channels != 3:
        raise WeightsError(f"{path}: a MIRNet for {in_channels}-channel images; only RGB is supported")
    num_mrb = count(r"body\.0\.body\.(\d+)\.blocks\.")
    daus = count(r"body\.0\.body\.0\.blocks\.0\.(\d+)\.")
    if daus == 0:
        raise WeightsError(f"{path}: not a MIRNet checkpoint (no tensors of its first MRB, body.0.body.0.blocks.0.*)")
    if daus < 2:
        raise WeightsError(f"{path}: unsupported official layout with {daus} DAU(s) per stream")
    squeeze = state.get("body.0.body.0.blocks.0.0.CA.conv_du.0.weight")
    if squeeze is None or squeeze.ndim != 4 or squeeze.shape[0] == 0:
        raise WeightsError(f"{path}: not a MIRNet checkpoint (no channel attention in its first DAU)")
    reduction = channels // squeeze.shape[0]
    try:  # a checkpoint whose shapes make no MIRNet (e.g. more squeezed channels than channels)
        return MIRNetConfig(
            channels=channels,
            num_rrg=count(r"body\.(\d+)\.body\."),
            num_mrb=num_mrb,
            num_streams=count(r"body\.0\.body\.0\.blocks\.(\d+)\."),
            daus_per_stream=daus,
            reduction=reduction,
            share_weights=True,
        )
    except ValueError as error:
        raise WeightsError(f"{path}: not a MIRNet checkpoint ({error})") from None


def read_torch_checkpoint(path: str | Path):
    """What torch.load reads from path with its weights-only unpickler (tensors and plain containers,
    never code), its failures as one WeightsError line."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise WeightsError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():  # torch warns about some refused files before it raises
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for foreign or damaged files
        raise WeightsError(f"{path}: not a readable torch checkpoint ({_load_failure(error)})") from None


def _load_failure(error: BaseException) -> str:
    """Why torch.load refused a file, in one line."""
    text = str(error)
    if not text.startswith("Weights only load failed"):
        return f"{type(error).__name__}: {first_line(error)}" if text.strip() else type(error).__name__
    # torch's message advises loading without weights_only, which runs whatever code the file holds:
    # never advised here. Its reason follows "WeightsUnpickler error:" (on that line or the next).
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = ""
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            break
        if line.startswith("Trying to load unsupported"):
            reason = line
            break
    reason = reason.split(" was not an allowed global")[0].split(" whose module")[0].rstrip(".")
    return "refused by torch's weights-only reader, which never runs a file's code" + (f": {reason}" if reason else "")


def latest_weights(last: str | Path) -> MIRNet:
    """The model where a training run's last.pt left it (its moving average, if the run kept one):
    best.safetensors holds only the best validated epoch, and where a run ends can differ from that
    by tenths of a dB."""
    last = Path(last)
    config = last.parent / "config.json"
    if not last.is_file() or not config.is_file():
        raise WeightsError(f"{last}: not a training checkpoint beside its run's config.json")
    try:
        model = MIRNet(MIRNetConfig.from_dict(json.loads(config.read_text())["model"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{config}: not a run's config.json ({type(error).__name__}: {error})") from None
    state = read_torch_checkpoint(last)
    try:
        if "ema" in state:  # AveragedModel's state: the wrapped model's under "module.", and a step count
            weights = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
        else:
            weights = state["model"]
        model.load_state_dict(weights)
    except (KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise WeightsError(f"{last}: not a checkpoint of the run in {config} ({type(error).__name__}: "
                           f"{first_line(error)})") from None  # fmt: skip
    return model.eval()


def load_official_checkpoint(path: str | Path) -> MIRNet:
    """A ready model (eval mode) from a checkpoint saved by the official MIRNet code.

    Read with torch's weights-only unpickler, so a checkpoint cannot run code on load.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {'a folder, not a checkpoint file' if path.is_dir() else 'no such file'}")
    checkpoint = read_torch_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    named = isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    if not named:
        raise WeightsError(f"{path}: not an official MIRNet checkpoint (no state_dict of named tensors)")
    if state and all(key.startswith("module.") for key in state):  # saved from nn.DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}

    model = MIRNet(_infer_config(state, path))
    # Copy into our parameters themselves: a module the official tree names twice (a shared DAU,
    # the PReLU in every DAU) is one tensor here, and both official copies must agree on it.
    loaded: set[int] = set()
    used: set[str] = set()
    with torch.no_grad():
        for prefix, module in _official_modules(model):
            for local, param in module.state_dict(keep_vars=True).items():
                key = prefix + _official_key(module, local)
                if key not in state:
                    raise WeightsError(f"{path}: not an official MIRNet checkpoint (missing {key})")
                value = state[key]
                if value.shape != param.shape:
                    raise WeightsError(
                        f"{path}: {key} has shape {tuple(value.shape)}, the model needs {tuple(param.shape)}"
                    )
                if id(param) in loaded and not torch.equal(param, value.to(param.dtype)):
                    raise WeightsError(f"{path}: {key} differs from the tensor it shares weights with")
                param.copy_(value)
                loaded.add(id(param))
                used.add(key)
    # The blur filters are constants, not weights; a checkpoint may hold them, but only as they are.
    filters = {k: v for k, v in official_state_dict(model).items() if k.endswith(".filt")}
    for key in (k for k in state if k in filters):
        if state[key].shape != filters[key].shape or not torch.equal(state[key].float(), filters[key]):
            raise WeightsError(f"{path}: {key} is not the [1 2 1] x [1 2 1] / 16 blur filter the model uses")
        used.add(key)
    unexpected = sorted(k for k in state if k not in used)
    if unexpected:
        more = f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""
        raise WeightsError(f"{path}: unexpected tensors for the official layout: {', '.join(unexpected[:3])}{more}")
    assert all(id(p) in loaded for p in model.parameters()), "official layout misses a parameter"
    return model.eval()
