"""Check mirnet against the official MIRNet code, in both directions.

    git clone https://github.com/swz30/MIRNet /path/to/MIRNet
    .venv/bin/python scripts/verify_official.py /path/to/MIRNet

Builds the official MIRNet() with random weights (PReLU slopes included), saves it as the official
training script does (DataParallel's `module.` prefix, epoch and optimizer entries), loads it with
mirnet.load_official_checkpoint, and compares outputs; then exports a mirnet model to the official
layout and loads it into the official module with strict=True. Needs only torch and numpy: the
official `utils` package is bypassed (its __init__ imports OpenCV and scikit-image).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import torch

import mirnet


def import_official(repo: Path):
    utils = types.ModuleType("utils")
    utils.__path__ = [str(repo / "utils")]  # a namespace: utils.antialias imports, utils/__init__ does not run
    sys.modules["utils"] = utils
    sys.path.insert(0, str(repo))
    from networks.MIRNet_model import MIRNet  # noqa: PLC0415

    return MIRNet


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="a checkout of github.com/swz30/MIRNet")
    parser.add_argument("--size", default="64x96", help="test image HEIGHTxWIDTH (multiples of 4)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    Official = import_official(args.repo)
    torch.manual_seed(0)
    x = torch.rand(2, 3, height, width)

    official = perturb(Official())
    print(f"official MIRNet(): {sum(p.numel() for p in official.parameters()):,} parameters")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model_epoch_1.pth"
        state = torch.nn.DataParallel(official).state_dict()
        torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, path)
        ours = mirnet.load_official_checkpoint(path)
    with torch.no_grad():
        forward = (official(x) - ours(x)).abs().max().item()
    print(f"mirnet.load_official_checkpoint: {mirnet.count_parameters(ours):,} parameters, "
          f"max |official - mirnet| = {forward:.3g}")  # fmt: skip

    ours = perturb(mirnet.create_model("paper"))
    official = Official()
    official.load_state_dict(mirnet.official_state_dict(ours), strict=True)
    official.eval()
    with torch.no_grad():
        backward = (official(x) - ours(x)).abs().max().item()
    print(f"mirnet.official_state_dict -> official (strict): max |official - mirnet| = {backward:.3g}")
    ok = forward < 1e-4 and backward < 1e-4
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
