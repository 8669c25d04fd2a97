"""Pack LOL into parts small enough to carry to a lent GPU machine, one part per device call.

    .venv/bin/python scripts/pack_lol_parts.py --lol ../shared/data/LOL --out .devdata [--part-mb MIB] \
        [--eval15]

A device call carries at most 64 MiB with the repository, and the machine never sees ../shared, so
the data travel in parts over back-to-back calls and are merged there (`cp -a PART/. /root/lol/`).
our485's files are copied byte for byte; eval15's PNGs are re-encoded as lossless WebP (checked pixel
for pixel) to fit. The seeds split of our485 is the one the CPU models used (`--val-pairs 64`, split
seed 0: 65 held-out pairs by scene), written out as two folders, so that the GPU run trains with
`--data train --val-data val` on exactly the same pairs (scripts/gpu_paper_run.sh):

    val/ (the 65 held-out pairs) first, then train/ (the other 420 pairs) in a shuffled order, so the
    parts that arrived hold a random subset of the training pairs if not all of them could be
    carried, then eval15/ with --eval15, filled into parts of at most --part-mb MiB in that order

Each part also holds a manifest (part-N.txt) of its pairs.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from mirnet.data import find_pairs, load_pairs, read_rgb, split_by_scene


def webp_bytes(source: Path) -> bytes:
    """An image as lossless WebP (about 30% smaller than LOL's PNGs), checked pixel for pixel."""
    pixels = read_rgb(source)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "WEBP", lossless=True, quality=100, method=6, exact=True)
    if not np.array_equal(np.asarray(Image.open(buffer).convert("RGB")), pixels):
        raise SystemExit(f"{source}: lossless WebP did not keep its pixels")
    return buffer.getvalue()


def repository_mib() -> float:
    """The size of the files that travel with every device call: those git tracks here, and those it
    neither tracks nor ignores."""
    root = Path(__file__).resolve().parent.parent
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run(command, cwd=root, capture_output=True, check=True).stdout
    files = [root / name for name in names.decode().split("\0") if name]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lol", type=Path, default=Path("../shared/data/LOL"))
    parser.add_argument("--out", type=Path, default=Path(".devdata"))
    parser.add_argument("--part-mb", type=float, default=None,
                        help="MiB in each part (default: 63 less the repository's travelling files; the "
                             "device tool refused 43.1 beside 20.5 of them: it counts more than bytes)")  # fmt: skip
    parser.add_argument("--eval15", action="store_true", help="add eval15/ after the training pairs")
    parser.add_argument("--val-pairs", type=int, default=64)
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")
    if args.part_mb is None:
        args.part_mb = 63 - repository_mib()

    our485 = args.lol / "our485"
    try:
        files = {stem: (low, high) for stem, low, high in find_pairs(our485)}
        train, held = split_by_scene(load_pairs(our485), args.val_pairs, args.split_seed)
    except ValueError as error:  # DataError names its file; the split's own refusal names the counts
        raise SystemExit(f"pack_lol_parts.py: {error}") from None
    order = [p.stem for p in train]
    np.random.default_rng(args.split_seed).shuffle(order)

    # (folder, stem, [(side, file name, the file to copy or the bytes to write)]): validation first, so
    # that a smoke test can train on it before the rest arrives.
    items = [("val", p.stem, [("low", files[p.stem][0]), ("high", files[p.stem][1])]) for p in held]
    items += [("train", stem, [("low", files[stem][0]), ("high", files[stem][1])]) for stem in order]
    if args.eval15:
        for stem, low, high in find_pairs(args.lol / "eval15"):
            items.append(("eval15", stem, [(side, (f.with_suffix(".webp").name, webp_bytes(f)))
                                           for side, f in (("low", low), ("high", high))]))  # fmt: skip

    def size_of(item) -> int:
        return sum(len(f[1]) if isinstance(f, tuple) else f.stat().st_size for _, f in item[2])

    def put(part: int, item) -> None:
        folder, stem, sides = item
        for side, f in sides:
            name, data = f if isinstance(f, tuple) else (f.name, None)
            target = args.out / f"p{part}" / folder / side / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                shutil.copyfile(f, target)
            else:
                target.write_bytes(data)
        with open(args.out / f"p{part}" / f"part-{part}.txt", "a") as manifest:
            manifest.write(f"{folder}/{stem}\n")

    part, size, counts = 1, 0, {}
    limit = args.part_mb * 2**20
    for item in items:
        item_size = size_of(item)
        if item_size > limit:
            mib = item_size / 2**20
            raise SystemExit(f"{item[0]}/{item[1]}: {mib:.3f} MiB, more than --part-mb {args.part_mb:g}")
        if size and size + item_size > limit:
            print(f"part {part}: {counts}, {size / 2**20:.1f} MiB")
            part, size, counts = part + 1, 0, {}
        put(part, item)
        size += item_size
        counts[item[0]] = counts.get(item[0], 0) + 1
    print(f"part {part}: {counts}, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
