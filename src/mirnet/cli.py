"""The `mirnet` command: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .config import PRESETS, MIRNetConfig, preset
from .data import DataError
from .errors import first_line, out_of_memory
from .export import ExportError
from .files import output_folder, same_file, same_path
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


def _at_least(minimum: int):
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _duration(text: str) -> float:
    """Seconds from "7200", "7200s", "120m" or "2h"."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = float(number) * units[unit.lower()]
        if not 0 < seconds < math.inf:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 7200, 120m or 2h, got {text!r}") from None
    return seconds


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

    output = Path(args.output or Path(args.checkpoint).with_suffix(".safetensors"))
    if same_file(output, args.checkpoint):
        raise WeightsError(f"{output}: refusing to overwrite the input checkpoint")
    if output.suffix.lower() != ".safetensors":  # else the file would be read back as what it is named
        raise WeightsError(f"{output}: the output is a .safetensors file; give -o a name ending in .safetensors")
    if args.output is None and output.exists():  # a file the user did not name is never replaced
        raise WeightsError(f"{output}: already exists; name the output with -o")
    if output.exists() and not args.overwrite:
        raise WeightsError(f"{output}: already exists; replace it with --overwrite, or choose another -o")
    model = load_official_checkpoint(args.checkpoint)
    save_weights(model, output, metadata={"source": f"official checkpoint {Path(args.checkpoint).name}"})
    print(f"{output}: {count_parameters(model):,} parameters, {model.config}")
    return 0


def _model_overrides(args: argparse.Namespace) -> dict:
    """MIRNetConfig fields given by --channels and --model-config."""
    import json

    overrides = {k: v for k, v in (("channels", args.channels),) if v is not None}
    if args.model_config:
        try:
            extra = json.loads(args.model_config)
        except json.JSONDecodeError as error:
            raise ValueError(f"--model-config is not JSON ({error})") from None
        if not isinstance(extra, dict):
            raise ValueError('--model-config must be a JSON object, e.g. \'{"num_rrg": 1}\'')
        overrides.update(extra)
    return overrides


def _same_option(name: str, recorded, given) -> bool:
    """Whether a training option given again on resume is the recorded one (paths by where they lead)."""
    return same_path(recorded, given) if name == "init" else recorded == given


# Where the run's data is now may differ from where it was started (another working directory, a
# moved copy): like --out, --data and --val-data may be given anew on resume, and train() checks that
# they hold the recorded pairs (names and file sizes).
DATA_LOCATIONS = ("data", "val_data")


def _data_locations(run, recorded, given: dict) -> dict:
    """The run's data folders for a resume: as given, else where the run last found them (the absolute
    paths config.json keeps), else as typed when it started, if that leads to a folder from here."""
    import json

    found = json.loads(run.config.read_text()).get("paths", {})
    where = {}
    for name in DATA_LOCATIONS:
        value = getattr(recorded, name)
        if name in given and not same_path(value, given[name]):  # the same folder by another name: as recorded
            value = given[name]
        elif value and name in found and Path(found[name]).is_dir():
            value = found[name] if not same_path(found[name], value) else value
        elif value and not Path(value).is_dir():
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag}: the run's {value} is not found from {Path.cwd()}; resume with "
                             f"{flag} FOLDER, where that data is now")  # fmt: skip
        where[name] = value
    return where


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from .train import RESUMABLE_CHANGES, Run, TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.resume:
        run = Run(args.out)
        if not run.config.exists():
            raise ValueError(f"{run.folder}: nothing to resume (no config.json)")
        # A resumed run keeps its recorded configuration; only its budget and how it runs may change
        # (a run that spans sessions may resume on a CPU without native bf16). Options equal to the
        # recorded ones are accepted, so a script can repeat its whole command to resume; options
        # that would change what the run learns are refused rather than silently ignored.
        recorded = TrainConfig.load(run.config)
        if recorded.train_time and args.epochs is not None:
            raise ValueError(f"--epochs: the run in {run.folder} trains for a time (--train-time "
                             f"{recorded.train_time:g} s), not for epochs")  # fmt: skip
        differ = {"--" + k.replace("_", "-"): (getattr(recorded, k), v) for k, v in given.items()
                  if k not in (*RESUMABLE_CHANGES, "out") and not (k in DATA_LOCATIONS and getattr(recorded, k))
                  and not _same_option(k, getattr(recorded, k), v)}  # fmt: skip
        for k, v in _model_overrides(args).items():
            was = recorded.model_overrides.get(k)
            if was != v:
                differ["--channels" if k == "channels" else f"--model-config {k}"] = (was, v)
        if differ:
            names = "; ".join(f"{k}: recorded {old!r}, given {new!r}" for k, (old, new) in differ.items())
            allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE_CHANGES)
            raise ValueError(f"--resume continues the run as recorded in {run.config}; only {allowed} "
                             f"can change ({names})")  # fmt: skip
        changes = {k: v for k, v in given.items() if k in RESUMABLE_CHANGES}
        # The folder given, not the one recorded: a copied or moved run resumes where it now is.
        config = dataclasses.replace(recorded, out=str(args.out), **changes,
                                     **_data_locations(run, recorded, given))  # fmt: skip
    else:
        if not args.data:
            raise ValueError("--data is required (a folder with low/ and high/)")
        if args.epochs is not None and args.train_time is not None:
            raise ValueError("--epochs and --train-time both set how long the run trains; give one")
        config = TrainConfig(**{**given, "model_overrides": _model_overrides(args)})
    row = train(config, resume=args.resume)
    if "epoch" in row:
        where = "" if row["last_step"] == row["step"] else f"stopped at step {row['last_step']} (last.pt); "
        print(f"{config.out}: {where}epoch {row['epoch']}, step {row['step']}, val PSNR {row.get('val_psnr')}")
    elif row:
        print(f"{config.out}: stopped at step {row['last_step']} (last.pt), before its first epoch ended")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .data import cut_short, load_pairs, smaller_than
    from .evaluate import comparison_figure, evaluate, model_method
    from .runtime import select_runtime

    pairs = load_pairs(args.data)
    if small := smaller_than(pairs, 11, "SSIM's 11x11 window"):  # said before any work, with the pairs named
        raise DataError(f"{args.data}: {small}")
    if note := cut_short(pairs):
        print(f"note: {note}", file=sys.stderr)
    if args.out:
        out, data = Path(args.out).resolve(), Path(args.data).resolve()
        if any(out == side or side in out.parents for side in (data / "low", data / "high")):
            raise ValueError(f"{args.out}: inside the data's low/ or high/ folder, whose files are taken for images; "
                             "choose another --out")  # fmt: skip
    methods = {}
    if args.model or args.weights:
        from .zoo import load_model

        source = args.weights or args.model
        runtime = select_runtime(args.device, args.precision)
        methods[args.label or "mirnet"] = model_method(load_model(source), runtime, args.self_ensemble)
    if args.baselines:
        import importlib.util

        from .baselines import BASELINES

        # Checked before any work: CLAHE, LIME and MSR import them only when first run.
        missing = [m for m in ("cv2", "scipy") if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"--baselines needs the baselines extra: scripts/setup-env.sh baselines in a checkout "
                             f"(elsewhere pip install -e '.[baselines]'); missing {', '.join(missing)}")
        if args.label in BASELINES:
            raise ValueError(f"--label {args.label} is the name of a baseline; choose another label")
        methods.update(BASELINES)
    if not methods:
        raise ValueError("nothing to evaluate: give --model, --weights and/or --baselines")
    if args.out:
        output_folder(args.out)  # made now, once the model is found: the work can take hours
    # The seeds' figure: input | autocontrast | MIRNet | ground truth (LIME stands in without a model).
    label = args.label or "mirnet"
    columns = [c for c in ("autocontrast", label if label in methods else "lime") if c in methods] or list(methods)[:2]
    result = evaluate(pairs, methods, keep_outputs=args.figure if args.out else 0, progress=not args.json)
    if args.out:
        written = result.write(args.out)
        if args.figure:
            written.append(comparison_figure(result, pairs, ["input", *columns], Path(args.out) / "comparison.png",
                                             images=args.figure))  # fmt: skip
        if not args.json:
            print("wrote " + ", ".join(str(p) for p in written))
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
    else:
        print(result.to_markdown(per_image=not args.summary))
    return 0


def _tile(text: str) -> int | str | None:
    if text == "auto":
        return "auto"
    if text in ("none", "0"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a tile size in pixels, auto or none, got {text!r}") from None
    if value < 64:
        raise argparse.ArgumentTypeError(f"tile must be at least 64 pixels, got {value}")
    return value


def cmd_enhance(args: argparse.Namespace) -> int:
    from .enhance import Enhancer, enhance_files

    model = args.weights or args.model
    if args.backend == "onnx":
        from .exported import WHOLE_IMAGES_ONLY, onnx_enhancer

        if isinstance(args.tile, int):  # refused here, before any work, not by every image it would fail
            raise ValueError(f"--tile {args.tile}: {WHOLE_IMAGES_ONLY}; leave --tile out")
        wrong = [f"--{name} {value}" for name, value, fine in (("device", args.device, ("auto", "cpu")),
                 ("precision", args.precision, ("auto", "fp32"))) if value not in fine]  # fmt: skip
        if wrong:
            raise ValueError(f"--backend onnx runs float32 on the CPU (onnxruntime); {' '.join(wrong)} "
                             f"{'is' if len(wrong) == 1 else 'are'} for the torch backend")  # fmt: skip

        # Whole images: the onnx enhancer reads the default tile="auto" as none.
        enhancer = onnx_enhancer(model, args.self_ensemble)
    else:
        enhancer = Enhancer(model, device=args.device, precision=args.precision,
                            self_ensemble=args.self_ensemble)  # fmt: skip
    summary = enhance_files(args.inputs, args.output, enhancer, suffix=args.suffix, fmt=args.format,
                            recursive=args.recursive, overwrite=args.overwrite, tile=args.tile,
                            overlap=args.overlap, max_pixels=args.max_pixels, progress=not args.quiet)  # fmt: skip
    print(f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed; outputs in {args.output}",
          file=sys.stderr)  # fmt: skip
    return 1 if summary.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    import json

    from . import export
    from .zoo import load_model, model_file

    source = args.weights or args.model or ("lol-micro" if args.format == "micro" else None)
    output = Path(args.output)
    if same_file(output, model_file(source)):  # a model given by name too: its file in $MIRNET_HOME
        raise WeightsError(f"{output}: refusing to overwrite the input weights")
    # Options another format would use are refused, not ignored (an onnx export is float32, of any size).
    ignored = {"onnx": ("int8", "calibration", "calibration_count", "height", "width", "tile", "overlap", "json"),
               "tflite": ("tile", "overlap", "json"), "micro": ("int8", "height", "width")}[args.format]  # fmt: skip
    # "is", not "in (None, False)": 0 == False, yet --tile 0 is given as much as --tile 32.
    if given := [f"--{name.replace('_', '-')}" for name in ignored
                 if (value := getattr(args, name)) is not None and value is not False]:
        raise ValueError(f"{', '.join(given)}: not an option of the {args.format} export")
    if (args.calibration or args.calibration_count is not None) and args.format == "tflite" and not args.int8:
        flag = "--calibration" if args.calibration else "--calibration-count"
        raise ValueError(f"{flag} sets int8 ranges: add --int8 (a float32 export needs none)")
    if args.calibration_count is not None and args.calibration_count < 1:
        raise ValueError(f"--calibration-count must be at least 1, got {args.calibration_count}")
    count = 64 if args.calibration_count is None else args.calibration_count
    name = Path(str(source or "mirnet")).stem.replace("-", "_")  # of the micro export's files
    _check_export_output(output, args.format, args.overwrite, name)  # before the conversion, which takes minutes
    height = 400 if args.height is None else args.height
    width = 600 if args.width is None else args.width
    tile = export.MICRO_TILE if args.tile is None else args.tile
    overlap = export.MICRO_OVERLAP if args.overlap is None else args.overlap
    if args.format == "micro":
        export.check_micro_tiles(tile, overlap)
    model = load_model(source)
    if args.format == "onnx":
        export.export_onnx(model, output)
        print(f"wrote {output} ({output.stat().st_size:,} bytes): input 'low' 1x3xHxW float in [0, 1], "
              f"any H, W of at least {model.size_multiple}")
        return 0
    calibration = None
    if args.int8 or args.format == "micro":
        size = (tile, tile) if args.format == "micro" else (height, width)
        if args.calibration:
            calibration = export.calibration_tiles(args.calibration, *size, count=count)
        else:
            calibration = export.sample_calibration_tiles(*size, count=count)
            print("calibrating int8 ranges on the drawn sample scene; --calibration FOLDER (e.g. LOL/our485) "
                  "uses real photos", file=sys.stderr)  # fmt: skip
    if args.format == "tflite":
        export.export_tflite(model, output, height, width, calibration)
        kind = "int8" if calibration is not None else "float32"
        print(f"wrote {output} ({output.stat().st_size:,} bytes): {kind}, input 1x{height}x{width}x3 NHWC")
        return 0
    report = export.export_micro(model, output, calibration, tile=tile, overlap=overlap, name=name)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    fast, slow = report["ms_per_qcif_frame_estimate"]
    print(f"wrote {output}/: int8 model {report['model_bytes']:,} bytes, tensor arena {report['arena_bytes']:,} "
          f"bytes measured in TFLite Micro ({report['arena_bytes_in_sketch']:,} in the sketch), "
          f"{report['tiles_per_qcif_frame']} tiles of {tile}x{tile} per QCIF frame, "
          f"{report['macs_per_qcif_frame'] / 1e6:.0f} M MACs per frame: about {fast / 1e3:.1f}-{slow / 1e3:.1f} s "
          f"per frame estimated ({report['estimate_assumptions']})")  # fmt: skip
    if not report["fits_nano_33_ble_sense"]:
        smaller = "smaller tiles (--tile)" + ("" if source == "lol-micro" else " or a smaller model (lol-micro)")
        print(f"warning: too large for an Arduino Nano 33 BLE Sense (arena at most {export.BOARD_ARENA_BUDGET:,} "
              f"bytes, arena + frame + overlaps at most {export.BOARD_STATIC_RAM_BUDGET:,}, model at most "
              f"{export.BOARD_MODEL_BUDGET:,}); try {smaller}", file=sys.stderr)  # fmt: skip
    return 0


def _check_export_output(output: Path, format: str, overwrite: bool, name: str) -> None:
    """Refuse an output the export could not write, or would overwrite unasked, before any work."""
    from .export import micro_files

    if format == "micro":  # a folder, created if need be
        if output.exists() and not output.is_dir():
            raise ValueError(f"{output}: is a file; the micro export writes a folder")
        if not overwrite and (held := [str(p) for p in micro_files(output, name) if p.exists()]):
            raise ValueError(f"{held[0]}: exists (an earlier export, perhaps edited); --overwrite replaces it")
        return
    if output.is_dir():
        raise ValueError(f"{output}: is a folder; give the {format} file to write")
    if not output.parent.is_dir():
        raise ValueError(f"{output.parent}: no such folder")
    if output.exists() and not overwrite:
        raise ValueError(f"{output}: exists; --overwrite replaces it")


def cmd_models(args: argparse.Namespace) -> int:
    import json

    from .zoo import list_models, models_folder

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    for entry in models:
        config = entry.get("config", {})
        flag = " (default)" if entry["default"] else ""
        print(f"{entry['name']}{flag}  [{entry['kind']}]  {entry['path']}")
        if "error" in entry:
            print(f"    unusable: {entry['error']}")
            continue
        if entry.get("description"):
            print(f"    {entry['description']}")
        if config:
            print(f"    {config['channels']} channels, {config['num_rrg']}x{config['num_mrb']} RRGxMRB, "
                  f"{config['num_streams']} streams, {entry.get('parameters', '?')} parameters")  # fmt: skip
        training = entry.get("training")
        if training:
            print(f"    trained: {training.get('summary', training)}")
        else:  # e.g. a converted official checkpoint: say where it came from, or that nothing is known
            print(f"    source: {entry.get('source', 'no training record (possibly untrained)')}")
        for name, scores in (entry.get("metrics") or {}).items():
            print(f"    {name}: " + ", ".join(f"{k} {v}" for k, v in scores.items()))
    print(f"installed models folder: {models_folder()} (drop mirnet .safetensors files there)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    output = run_demo(args.output, args.image, args.weights or args.model, overwrite=args.overwrite)
    print(f"wrote {output}")
    return 0


def _pil_limit() -> int:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


WEIGHTS_HELP = "a mirnet .safetensors file, a training run's last.pt or an official MIRNet .pth checkpoint"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirnet", description="Low-light image enhancement with MIRNet.")
    parser.add_argument("--version", action="version", version=f"mirnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("enhance", help="enhance photos: files, folders, globs")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", default="enhanced", help="output folder (default ./enhanced)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="a bundled or installed model's name (default: the bundled default)")
    source.add_argument("--weights", help=WEIGHTS_HELP + "; with --backend onnx, a .onnx file")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="tile size in pixels (at least 64, and more than twice --overlap), or none (or 0) for "
                        "whole images (default auto: tiles above 1 MP)")  # fmt: skip
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels, blended (default 32)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--suffix", default="", help="appended to each output's stem, e.g. _enhanced")
    p.add_argument("--format", choices=["png", "jpg", "webp"], help="output format (default: the input's)")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (default: skip them)")
    p.add_argument("--max-pixels", type=_at_least(1), default=_pil_limit(),
                   help="refuse larger images, a guard against decompression bombs (default: Pillow's)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: run an ONNX export (--weights FILE.onnx, or the model exported on the fly) "
                        "through onnxruntime, whole images only")  # fmt: skip
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 autocast where the CPU runs it natively, else fp32")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the model's 8 flipped/rotated views: 8 times slower, slightly better")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_enhance)

    p = commands.add_parser("export", help="ONNX, TensorFlow Lite (float32/int8), or a TFLite Micro sketch")
    p.add_argument("format", choices=["onnx", "tflite", "micro"])
    p.add_argument("-o", "--output", required=True, help="a file (onnx, tflite) or a folder (micro)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="a bundled or installed model's name (default: the default; lol-micro for micro)")
    source.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--height", type=_at_least(4), help="tflite input height (default 400)")
    p.add_argument("--width", type=_at_least(4), help="tflite input width (default 600)")
    p.add_argument("--int8", action="store_true", help="tflite: full-integer int8 (int8 input and output)")
    p.add_argument("--calibration", help="int8 ranges from crops of these images (a folder, or a paired folder's low/)")
    p.add_argument("--calibration-count", type=int, help="calibration crops (default 64)")
    p.add_argument("--tile", type=int, help="micro: tile size in pixels (default 32)")
    p.add_argument("--overlap", type=int, help="micro: tile overlap in the sketch (default 8)")
    p.add_argument("--json", action="store_true", help="micro: print the report as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export at --output")
    p.set_defaults(run=cmd_export)

    p = commands.add_parser("models", help="the bundled and installed models, with their metrics")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)

    p = commands.add_parser("demo", help="enhance a sample (or IMAGE) and write a side-by-side picture")
    p.add_argument("image", nargs="?", help="a photo to use instead of the drawn sample")
    p.add_argument("-o", "--output", default="mirnet-demo.png",
                   help="a .png file to write (default mirnet-demo.png); an earlier demo picture there is replaced")
    p.add_argument("--overwrite", action="store_true", help="replace the output even if it is another file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="a bundled or installed model's name")
    source.add_argument("--weights", help=WEIGHTS_HELP)
    p.set_defaults(run=cmd_demo)

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

    p = commands.add_parser("train", help="train on paired images (resumable, DDP under torchrun)")
    p.add_argument("--data", help="paired folder with low/ and high/ (e.g. LOL/our485)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--preset", choices=list(PRESETS), help="model preset (default paper)")
    p.add_argument("--channels", type=int, help="model width override")
    p.add_argument("--model-config", help='more MIRNetConfig overrides as JSON, e.g. \'{"num_rrg": 1}\'')
    p.add_argument("--init", help="start from these weights (a model name, a .safetensors or a run's last.pt) of the same preset; "
                   "shared weights can start a run that does not share them")
    p.add_argument("--split", choices=["seeds", "full"], help="seeds: hold out 185 pairs by scene (default); full: train on all")
    p.add_argument("--val-pairs", type=int, help="pairs held out by the seeds split (default 185)")
    p.add_argument("--val-data", help="validate on this paired folder instead")
    p.add_argument("--val-limit", type=_at_least(1), help="validate on the first N validation pairs only")
    p.add_argument("--crop", type=int, help="training crop size (default 128)")
    p.add_argument("--batch-size", type=int, help="crops per step and process (default 4)")
    p.add_argument("--augment", action="store_true", default=None, help="random flips/rotations (8)")
    p.add_argument("--exposure-jitter", type=float,
                   help="multiply each low-light crop by a gain in [1/S, S], log-uniform (default 1: off)")
    p.add_argument("--mixup", type=float,
                   help="share of batches whose pairs are each blended with a random pair of the batch, "
                        "one Beta(1.2, 1.2) weight (default 0: off; 0.5 as BasicSR; needs a batch of 2+)")
    p.add_argument("--epochs", type=int, help="default 50")
    p.add_argument("--steps-per-epoch", type=int, help="default: training pairs / (batch size x processes)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all (resumable)")
    p.add_argument("--time-budget", type=_duration, help="stop after this long in this invocation (e.g. 600, 10m; resumable)")
    p.add_argument("--train-time", type=_duration,
                   help="train for this long in all (e.g. 2h, 90m, 5400; validation included, across resumes) "
                        "instead of --epochs: --schedule cosine anneals over it, epochs set only how often "
                        "the run validates")  # fmt: skip
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument("--schedule", choices=["plateau", "cosine"], help="default plateau (on validation PSNR)")
    p.add_argument("--warmup-steps", type=int, help="linear warm-up for the cosine schedule")
    p.add_argument("--loss", choices=["charbonnier", "psnr"], help="charbonnier (default, the paper's) or psnr: minus each crop's PSNR in dB")
    p.add_argument("--ssim-weight", type=float, help="add this weight x (1 - SSIM) to the loss (default 0)")
    p.add_argument("--ema", type=float, help="validate and save a moving average of the weights with this decay, e.g. 0.999 (default 0: off)")
    p.add_argument("--seed", type=int)
    p.add_argument("--split-seed", type=int, help="seed of the seeds split (default: --seed); keep it to vary --seed "
                   "over the same held-out pairs")  # fmt: skip
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--checkpoint-every", type=float, help="seconds between mid-epoch checkpoints (default 300)")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("evaluate", help="score MIRNet and classical baselines on paired images")
    p.add_argument("--data", required=True, help="paired folder with low/ and high/ (e.g. LOL/eval15)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", help="a bundled or installed model's name")
    source.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--label", help="the model's name in the tables (default mirnet)")
    p.add_argument("--baselines", action="store_true", help="also score the classical methods")
    p.add_argument("--out", help="write evaluation.{csv,json,md} (and comparison.png) here")
    p.add_argument("--figure", type=_at_least(0), default=4, help="images in comparison.png (0: none; default 4)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--summary", action="store_true", help="print the means only")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 autocast where the CPU runs it natively, else fp32 (model cards: fp32)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="score the mean of the model's 8 flipped/rotated views (8 times the cost)")
    p.set_defaults(run=cmd_evaluate)

    p = commands.add_parser("convert-official", help="official MIRNet checkpoint (.pth) to mirnet safetensors")
    p.add_argument("checkpoint", help="a checkpoint saved by the official MIRNet code")
    p.add_argument("-o", "--output",
                   help="output .safetensors (default: beside the checkpoint, if no such file exists)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    p.set_defaults(run=cmd_convert_official)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that the atomic writers remove their temporary files."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # By default SIGTERM (`kill`, a job scheduler, torchrun stopping its workers) ends the process
    # at once and leaves a hidden .part file beside an output or checkpoint being written; as an
    # exception it unwinds like Ctrl-C. A handler someone else installed is theirs to keep.
    in_main_thread = threading.current_thread() is threading.main_thread()  # else signal() raises
    catch = in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if catch:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.run(args)
    except BrokenPipeError:  # `mirnet presets | head`
        sys.stderr.close()
        return 0
    except (WeightsError, DataError, ValueError, OSError, ExportError) as error:
        print(f"mirnet: error: {error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:  # e.g. evaluating whole large images with a big model
        if not out_of_memory(error):
            raise  # any other RuntimeError is a bug, and its traceback is what a report needs
        print(f"mirnet: error: out of memory ({first_line(error)})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mirnet: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("mirnet: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if catch:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
