"""MIRNet configurations: one dataclass, and named presets of it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MIRNetConfig:
    """Hyper-parameters of one MIRNet; the defaults are the published model."""

    channels: int = 64  # feature channels of the full-resolution stream; stream j has channels * 2**j
    num_rrg: int = 3  # recursive residual groups
    num_mrb: int = 2  # multi-scale residual blocks per group
    num_streams: int = 3  # parallel resolutions in an MRB: 1, 1/2, 1/4, ... (official code: `height`)
    daus_per_stream: int = 2  # dual attention units along each stream (official code: `width`)
    reduction: int = 8  # squeeze ratio of the channel attention and of SKFF
    # The official code reuses modules: one DAU at every position of a stream, one PReLU in all DAUs
    # of the model, the stream-to-stream downsampler for both the first column and the exchange, and
    # the first stream's SKFF for the final fusion. True reproduces that (31,787,419 parameters for the
    # paper preset, the paper's "31.8M"); False gives every use its own weights.
    share_weights: bool = True

    def __post_init__(self) -> None:
        for name in ("channels", "num_rrg", "num_mrb", "num_streams", "daus_per_stream", "reduction"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MIRNetConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.share_weights, bool):  # JSON's "false" would be truthy
            raise ValueError(f"MIRNetConfig.share_weights must be true or false, got {self.share_weights!r}")

    def replace(self, **changes) -> "MIRNetConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "MIRNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MIRNetConfig fields: {', '.join(unknown)}")
        return cls(**values)


PAPER = MIRNetConfig()

# Named configurations. The ablation variants are those of the seed project (RRGs x MRBs); pass
# channels=... to preset() to build any of them at another width.
PRESETS: dict[str, MIRNetConfig] = {
    "paper": PAPER,
    "paper-unshared": PAPER.replace(share_weights=False),
    "ablation-3x2": PAPER.replace(num_rrg=3, num_mrb=2),
    "ablation-3x3": PAPER.replace(num_rrg=3, num_mrb=3),
    "ablation-3x1": PAPER.replace(num_rrg=3, num_mrb=1),
    "ablation-1x1": PAPER.replace(num_rrg=1, num_mrb=1),
    # The most validation PSNR per CPU-minute among the candidates of scripts/compact_search.py
    # that are 50x cheaper than the paper preset; the bundled default model (docs/models/lol-compact.md).
    "compact": PAPER.replace(channels=16, num_rrg=1, num_mrb=1),
    # For microcontrollers (mirnet export micro): every concept kept (DAUs, SKFF, residual resizing,
    # two streams) at a width whose int8 activations of a 32x32 tile fit a 160 KB tensor arena.
    "micro": PAPER.replace(channels=8, num_rrg=1, num_mrb=1, num_streams=2),
}


def preset(name: str, **overrides) -> MIRNetConfig:
    """The preset called `name`, with any fields overridden (e.g. preset("ablation-3x3", channels=16))."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
    return MIRNetConfig.from_dict({**config.to_dict(), **overrides})  # names unknown fields, as a ValueError
