"""The command line: output of the informational commands and one-line errors."""

import subprocess
import sys

import pytest
import torch

import mirnet
from mirnet.cli import main


def test_presets_lists_every_preset_with_the_official_count(capsys):
    assert main(["presets", "--size", "64x64"]) == 0
    out = capsys.readouterr().out
    for name in mirnet.PRESETS:
        assert f"\n{name} " in out
    paper = next(line for line in out.splitlines() if line.startswith("paper "))
    assert "31,787,419" in paper


def test_info_reports_overridden_width(capsys):
    assert main(["info", "ablation-1x1", "--channels", "8", "--no-share", "--size", "32x32"]) == 0
    out = capsys.readouterr().out
    with torch.device("meta"):
        expected = mirnet.count_parameters(mirnet.create_model("ablation-1x1", channels=8, share_weights=False))
    assert f"parameters: {expected:,}" in out
    assert "share_weights: False" in out


def test_convert_official_writes_loadable_safetensors(tmp_path, capsys, monkeypatch):
    model = mirnet.create_model("paper", channels=8).eval()
    mirnet.save_official_checkpoint(model, tmp_path / "model_lol.pth")
    assert main(["convert-official", str(tmp_path / "model_lol.pth")]) == 0
    converted = mirnet.load_weights(tmp_path / "model_lol.safetensors")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(converted(x), model(x))
    assert "model_lol.safetensors" in capsys.readouterr().out
    # Installed, it is listed with its size, though its file records no training.
    (tmp_path / "home").mkdir()
    (tmp_path / "model_lol.safetensors").rename(tmp_path / "home" / "official.safetensors")
    monkeypatch.setenv("MIRNET_HOME", str(tmp_path / "home"))
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.split("official  [installed]")[1]
    assert f"8 channels, 3x2 RRGxMRB, 3 streams, {mirnet.count_parameters(model)} parameters" in listed
    assert "source: official checkpoint model_lol.pth" in listed


def test_convert_official_never_replaces_a_file_it_was_not_told_to(tmp_path, capsys):
    checkpoint = tmp_path / "model_lol.pth"
    mirnet.save_official_checkpoint(mirnet.create_model("paper", channels=8), checkpoint)
    before = checkpoint.read_bytes()
    mine = tmp_path / "model_lol.safetensors"  # e.g. weights of one's own that share the stem
    mine.write_bytes(b"my weights")
    assert main(["convert-official", str(checkpoint)]) == 2
    assert capsys.readouterr().err == f"mirnet: error: {mine}: already exists; name the output with -o\n"
    assert main(["convert-official", str(checkpoint), "-o", str(tmp_path / "." / "model_lol.pth")]) == 2
    assert "refusing to overwrite the input checkpoint" in capsys.readouterr().err
    assert mine.read_bytes() == b"my weights" and checkpoint.read_bytes() == before
    assert main(["convert-official", str(checkpoint), "-o", str(mine)]) == 2  # named, but not to be replaced
    assert capsys.readouterr().err == (f"mirnet: error: {mine}: already exists; replace it with --overwrite, "
                                       "or choose another -o\n")  # fmt: skip
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"a photo")
    assert main(["convert-official", str(checkpoint), "-o", str(photo), "--overwrite"]) == 2
    assert "give -o a name ending in .safetensors" in capsys.readouterr().err
    assert mine.read_bytes() == b"my weights" and photo.read_bytes() == b"a photo"
    assert main(["convert-official", str(checkpoint), "-o", str(mine), "--overwrite"]) == 0
    assert mirnet.load_weights(mine).config.channels == 8


def test_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    result = subprocess.run(
        [sys.executable, "-m", "mirnet", "convert-official", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "broken.pth: not a readable torch checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "mirnet", "info", "--size", "12"], capture_output=True, text=True)
    assert result.returncode == 2 and "HEIGHTxWIDTH" in result.stderr


def test_tile_option_takes_sizes_auto_or_none_and_names_what_is_wrong(capsys):
    from mirnet.cli import build_parser

    parse = lambda *tile: build_parser().parse_args(["enhance", "a.png", *tile]).tile  # noqa: E731
    tiles = [parse(), parse("--tile", "none"), parse("--tile", "0"), parse("--tile", "512")]
    assert tiles == ["auto", None, None, 512]
    for value, message in (("32", "tile must be at least 64 pixels, got 32"), ("x", "expected a tile size")):
        with pytest.raises(SystemExit) as exit_:
            parse("--tile", value)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_official_checkpoints_load_by_path_like_mirnet_weights(tmp_path):
    model = mirnet.create_model("paper", channels=8, num_rrg=1, num_mrb=1).eval()
    mirnet.save_official_checkpoint(model, tmp_path / "model_lol.pth")
    loaded = mirnet.load_model(tmp_path / "model_lol.pth")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_train_guards_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for args, message in (
        (["--out", str(tmp_path / "empty"), "--resume"], f"{tmp_path / 'empty'}: nothing to resume"),
        (["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--model-config", "{channels: 8}"],
         "--model-config is not JSON"),
    ):  # fmt: skip
        assert main(["train", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_interrupted_command_exits_130_without_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("mirnet.cli.cmd_presets", interrupted)
    assert main(["presets"]) == 130
    assert capsys.readouterr().err == "mirnet: interrupted\n"


def test_running_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(monkeypatch, capsys):
    def exhausted(args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes.\n"
                           "Error code 12 (Cannot allocate memory)")  # fmt: skip

    monkeypatch.setattr("mirnet.cli.cmd_presets", exhausted)
    assert main(["presets"]) == 2
    assert capsys.readouterr().err == ("mirnet: error: out of memory (DefaultCPUAllocator: can't allocate memory: "
                                       "you tried to allocate 9663676416 bytes.)\n")  # fmt: skip

    def bug(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr("mirnet.cli.cmd_presets", bug)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main(["presets"])
