"""torch.compile for inference: how much faster each model runs compiled, what the compilation costs,
and whether the tiled enhancer's global-context replay (forward hooks on GlobalPool) survives it.

Each model is compiled once with dynamic shapes (one compilation serves every image size) in a fresh
inductor cache, so the first compiled pass pays what a user's first run would. Then eager and
compiled passes on one 600x400 image alternate for a few rounds (each the mean of about 2 s of
passes; medians of the rounds), in one process, so that load from elsewhere on a shared machine
weighs on both alike.

    .venv/bin/python scripts/bench_compile.py [--models default,paper] [--rounds 3] [--precision auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

# Before torch is imported: a cache of its own, so that the compile time is a cold one.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="mirnet-inductor-"))

import torch  # noqa: E402

from mirnet import create_model, load_model  # noqa: E402
from mirnet.enhance import Enhancer  # noqa: E402
from mirnet.model import GlobalPool  # noqa: E402
from mirnet.runtime import hardware_name, seconds_per_call  # noqa: E402


def hooks_honoured(enhancer: Enhancer) -> bool:
    """Whether a forward hook registered on a GlobalPool after compilation changes the output, as the
    tiled enhancer's replay of the whole image's pooled values needs."""
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    plain = enhancer._run(x)
    pool = next(m for m in enhancer.model.modules() if isinstance(m, GlobalPool))
    hook = pool.register_forward_hook(lambda module, inputs, out: out + 1.0)
    try:
        hooked = enhancer._run(x)
    finally:
        hook.remove()
    return not torch.equal(plain, hooked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="default,paper", help="'default' (the bundled weights) or preset names")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    x = torch.rand(1, 3, 400, 600, generator=torch.Generator().manual_seed(0))
    print(f"{hardware_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; 600x400; "
          f"torch.compile(dynamic=True), cold inductor cache; medians of {args.rounds} interleaved rounds")  # fmt: skip
    print("| model | precision | compile + first pass (s) | eager (s) | compiled (s) | eager / compiled "
          "| largest output difference | hooks added after compiling honoured |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in args.models.split(","):
        model = load_model() if name == "default" else create_model(name).eval()
        enhancer = Enhancer(model, device="cpu", precision=args.precision)
        eager_model = enhancer.model
        eager_out = enhancer._run(x)  # also pays oneDNN's first choice of kernels
        # Passes per timing: about 2 s of them, so that a short model's timings are not single runs.
        repeats = max(1, round(2.0 / seconds_per_call(lambda: enhancer._run(x))))
        enhancer.model = torch.compile(eager_model, dynamic=True)
        compile_time = seconds_per_call(lambda: enhancer._run(x))
        difference = (enhancer._run(x) - eager_out).abs().max().item()
        honoured = hooks_honoured(enhancer)
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        compiled_model = enhancer.model
        for _ in range(args.rounds):
            for mode, module in (("eager", eager_model), ("compiled", compiled_model)):
                enhancer.model = module
                times[mode].append(seconds_per_call(lambda: enhancer._run(x), repeats))
        eager, compiled = statistics.median(times["eager"]), statistics.median(times["compiled"])
        print(f"| {name} | {enhancer.runtime.precision} | {compile_time:.1f} | {eager:.3f} | {compiled:.3f} "
              f"| x{eager / compiled:.2f} | {difference:.4f} | {'yes' if honoured else 'no'} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
