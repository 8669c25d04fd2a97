"""The command line: output of the informational commands and one-line errors."""

import subprocess
import sys

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


def test_convert_official_writes_loadable_safetensors(tmp_path, capsys):
    model = mirnet.create_model("paper", channels=8).eval()
    mirnet.save_official_checkpoint(model, tmp_path / "model_lol.pth")
    assert main(["convert-official", str(tmp_path / "model_lol.pth")]) == 0
    converted = mirnet.load_weights(tmp_path / "model_lol.safetensors")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(converted(x), model(x))
    assert "model_lol.safetensors" in capsys.readouterr().out


def test_convert_official_never_replaces_a_file_it_was_not_told_to(tmp_path, capsys):
    checkpoint = tmp_path / "model_lol.pth"
    mirnet.save_official_checkpoint(mirnet.create_model("paper", channels=8), checkpoint)
    before = checkpoint.read_bytes()
    mine = tmp_path / "model_lol.safetensors"  # e.g. weights of one's own that share the stem
    mine.write_bytes(b"my weights")
    assert main(["convert-official", str(checkpoint)]) == 2
    assert capsys.readouterr().err.strip() == f"mirnet: error: {mine}: already exists; name the output with -o"
    assert main(["convert-official", str(checkpoint), "-o", str(tmp_path / "." / "model_lol.pth")]) == 2
    assert "refusing to overwrite the input checkpoint" in capsys.readouterr().err
    assert mine.read_bytes() == b"my weights" and checkpoint.read_bytes() == before
    assert main(["convert-official", str(checkpoint), "-o", str(mine)]) == 0  # named: replaced on purpose
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
