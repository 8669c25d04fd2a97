"""Which test and held-out pairs show a scene that the training pairs also show, in another shot.

    .venv/bin/python scripts/scene_overlap.py --data ../shared/data/LOL/our485 \
        --eval ../shared/data/LOL/eval15 [--val-pairs 64 --seed 0] [--out FOLDER] \
        [--models lol-compact,runs/x/stage2/best.safetensors] [--eval-tables A/evaluation.csv,...]

LOL shoots a scene several times, each shot with its own reference. split_by_scene keeps pairs whose
references are byte-identical together, but not two shots of one scene, so a held-out pair can show
a scene that training saw. This prints, for each --eval pair and each pair the seeds split holds out,
the training pair whose reference looks most like its own (correlation of 48x32 grey thumbnails,
mirnet.data.nearest_scenes) and calls it a seen scene at mirnet.data.SAME_SCENE or above. With
--models, each model (a bundled name or a weights file that held out these pairs) is scored on the
held-out pairs, and its means are given on the seen and the new scenes apart: a model that does
better on seen scenes than another is not the better one on new scenes. With --eval-tables, the
evaluation.csv files that `mirnet evaluate` wrote for --eval are averaged in the same way, on the --eval
pairs that show a scene of --data and on the new ones. With --out the tables are also written to
FOLDER/scene-overlap.md, and the models' per-image scores to FOLDER/evaluation.csv (.json, .md), for
scripts/paired_difference.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mirnet import load_model
from mirnet.data import SAME_SCENE, DataError, Pair, load_pairs, natural_key, nearest_scenes, split_by_scene
from mirnet.evaluate import Evaluation, evaluate, model_method
from mirnet.files import atomic_output
from mirnet.runtime import hardware_name, select_runtime
from mirnet.train import trained_on_held_out, training_record


def overlap_table(title: str, queries: list[Pair], training: list[Pair],
                  held_stems: set[str] = frozenset()) -> tuple[list[str], set[str]]:  # fmt: skip
    """Markdown lines naming each query's nearest training scene, and the stems of the seen ones."""
    lines = [title, "", "| pair | nearest training pair | correlation | scene |",
             "| --- | --- | ---: | --- |"]  # fmt: skip
    seen = set()
    for query, (stem, correlation) in zip(queries, nearest_scenes(queries, training)):
        same = correlation >= SAME_SCENE
        seen |= {query.stem} if same else set()
        where = " (held out by the split)" if stem in held_stems else ""
        lines.append(f"| {query.stem} | {stem}{where} | {correlation:.3f} | {'seen' if same else 'new'} |")
    share = f"{len(seen)} of {len(queries)} show a scene of the training pairs (correlation >= {SAME_SCENE})."
    lines += ["", share, ""]
    return lines, seen


def by_scene(title: str, results: dict[str, Evaluation], subsets: list[tuple[str, set[str]]]) -> list[str]:
    """Markdown lines of each result's methods' means on each subset of images (a dash where a subset
    is empty); a row is named by its method, after its result's name where there are several."""
    columns = " | ".join(f"{label} ({len(stems)}): PSNR / SSIM / GT-mean" for label, stems in subsets)
    lines = [title, "", f"| model | {columns} |", "| --- |" + " ---: |" * len(subsets)]
    for name, result in results.items():
        # Each subset's means as Evaluation.means gives them: by method; an empty subset has none.
        means = [{m["method"]: m for m in Evaluation([r for r in result.rows if r["image"] in s]).means()}
                 for _, s in subsets]  # fmt: skip
        for method in result.methods:
            cells = [f"{m[method]['psnr']:.2f} / {m[method]['ssim']:.4f} / {m[method]['gt_mean_psnr']:.2f}"
                     if method in m else "-" for m in means]  # fmt: skip
            label = f"`{name}`: {method}" if name else f"`{method}`"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the training pairs (our485)")
    parser.add_argument("--eval", help="test pairs to compare with all of --data (eval15)")
    parser.add_argument("--val-pairs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the seeds split (a run's split_seed)")
    parser.add_argument("--models", default="", help="models to score on the held-out pairs, comma-separated")
    parser.add_argument("--eval-tables", default="", help="evaluation.csv files of --eval, comma-separated")
    parser.add_argument("--out", type=Path, help="also write FOLDER/scene-overlap.md")
    args = parser.parse_args()
    if args.eval_tables and not args.eval:
        parser.error("--eval-tables needs --eval, the pairs those tables scored")

    try:
        pairs = load_pairs(args.data)
        tests = load_pairs(args.eval) if args.eval else []
        training, held = split_by_scene(pairs, args.val_pairs, seed=args.seed)
    except (DataError, ValueError) as error:  # a missing folder, a broken image, too many pairs asked
        raise SystemExit(f"scene_overlap.py: error: {error}") from None
    held_stems = {p.stem for p in held}
    heading = (f"Scene overlap by `scripts/scene_overlap.py` (seeds split of {args.data}, {args.val_pairs} "
               f"pairs asked, seed {args.seed}: {len(training)} training, {len(held)} held out)")  # fmt: skip
    lines = [heading, ""]
    if args.eval:
        table, seen_tests = overlap_table(f"{args.eval} against all {len(pairs)} pairs of {args.data}:",
                                          tests, pairs, held_stems)  # fmt: skip
        lines += table
    if args.eval_tables:
        stems = {p.stem for p in tests}
        try:
            tables = {path: Evaluation.read_csv(path) for path in args.eval_tables.split(",")}
        except ValueError as error:
            raise SystemExit(f"scene_overlap.py: error: {error}") from None
        for path, evaluation in tables.items():
            if strays := sorted({r["image"] for r in evaluation.rows} - stems, key=natural_key):
                raise SystemExit(f"scene_overlap.py: error: {path}: images not in {args.eval}: "
                                 f"{', '.join(strays[:3])}")  # fmt: skip
        lines += by_scene(f"Evaluation tables of {args.eval}, by scene:", tables,
                          [("all", stems), ("seen scenes", seen_tests), ("new scenes", stems - seen_tests)])
    title = f"Held-out pairs against the split's {len(training)} training pairs:"
    table, seen = overlap_table(title, held, training)
    lines += table

    if args.models:
        names = args.models.split(",")
        for name in names:
            reason = trained_on_held_out(training_record(name), args.data, args.val_pairs, args.seed)
            if reason:
                raise SystemExit(f"{name}: cannot be scored on these held-out pairs: {reason}")
        runtime = select_runtime("cpu", "fp32")  # as the model cards: the same numbers on every CPU
        methods = {name: model_method(load_model(name), runtime) for name in names}
        result = evaluate(held, methods, progress=True)
        lines += by_scene(f"Models on the held-out pairs, by scene (fp32; {hardware_name()}):", {"": result},
                          [("all", held_stems), ("seen scenes", seen), ("new scenes", held_stems - seen)])

    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_output(args.out / "scene-overlap.md") as tmp:
            tmp.write_text(text)
        if args.models:
            result.write(args.out)


if __name__ == "__main__":
    main()
