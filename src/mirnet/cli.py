"""The `mirnet` command: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import PRESETS, MIRNetConfig, preset
from .weights import WeightsError


def _describe(config: MIRNetConfig, height: int, width: int) -> tuple[int, int]:
    """Parameters and MACs at height x width, counted on the meta device (no memory, no init)."""
    import torch

    from .model import MIRNet, count_macs, count_parameters

    with torch.device("meta"):
        model = MIRNet(config)
    return count_parameters(model), count_macs(model, height, width)


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
        if height < 1 or width < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 400x600, got {text!r}") from None
    return height, width


def cmd_presets(args: argparse.Namespace) -> int:
    height, width = args.size
    print(f"{'preset':<16} {'channels':>8} {'RRGxMRB':>7} {'streams':>7} {'DAUs':>4} {'shared':>6} "
          f"{'params':>12} {f'GMACs@{height}x{width}':>16}")  # fmt: skip
    for name, config in PRESETS.items():
        if args.channels:
            config = config.replace(channels=args.channels)
        params, macs = _describe(config, height, width)
        print(
            f"{name:<16} {config.channels:>8} {f'{config.num_rrg}x{config.num_mrb}':>7} "
            f"{config.num_streams:>7} {config.daus_per_stream:>4} {'yes' if config.share_weights else 'no':>6} "
            f"{params:>12,} {macs / 1e9:>16.2f}"
        )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("channels", args.channels), ("share_weights", args.share)) if v is not None}
    config = preset(args.preset, **overrides)
    height, width = args.size
    params, macs = _describe(config, height, width)
    for key, value in config.to_dict().items():
        print(f"{key:>16}: {value}")
    print(f"{'parameters':>16}: {params:,}")
    print(f"{'GMACs':>16}: {macs / 1e9:.2f} at {height}x{width}")
    return 0


def cmd_convert_official(args: argparse.Namespace) -> int:
    from .model import count_parameters
    from .weights import load_official_checkpoint, save_weights

    model = load_official_checkpoint(args.checkpoint)
    output = args.output or Path(args.checkpoint).with_suffix(".safetensors")
    if Path(output).resolve() == Path(args.checkpoint).resolve():
        raise WeightsError(f"{output}: refusing to overwrite the input checkpoint")
    save_weights(model, output, metadata={"source": f"official checkpoint {Path(args.checkpoint).name}"})
    print(f"{output}: {count_parameters(model):,} parameters, {model.config}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirnet", description="Low-light image enhancement with MIRNet.")
    parser.add_argument("--version", action="version", version=f"mirnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("presets", help="list the named configurations with their size and cost")
    p.add_argument("--channels", type=int, help="build every preset at this width instead")
    p.add_argument("--size", type=_size, default=(256, 256), help="image size for the MAC count (default 256x256)")
    p.set_defaults(run=cmd_presets)

    p = commands.add_parser("info", help="one configuration in detail")
    p.add_argument("preset", nargs="?", default="paper", choices=list(PRESETS))
    p.add_argument("--channels", type=int, help="override the width")
    p.add_argument("--share", action=argparse.BooleanOptionalAction, help="official weight sharing on/off")
    p.add_argument("--size", type=_size, default=(256, 256), help="image size for the MAC count (default 256x256)")
    p.set_defaults(run=cmd_info)

    p = commands.add_parser("convert-official", help="official MIRNet checkpoint (.pth) to mirnet safetensors")
    p.add_argument("checkpoint", help="a checkpoint saved by the official MIRNet code")
    p.add_argument("-o", "--output", help="output .safetensors (default: beside the checkpoint)")
    p.set_defaults(run=cmd_convert_official)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `mirnet presets | head`
        sys.stderr.close()
        return 0
    except (WeightsError, ValueError, OSError) as error:
        print(f"mirnet: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mirnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
