"""Evaluation: tables in every format, the baselines, the comparison figure, and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SCRIPTS, run_script
from PIL import Image

import mirnet
from mirnet.baselines import BASELINES, autocontrast, gamma_correction, lime, lime_illumination
from mirnet.data import load_pairs
from mirnet.evaluate import comparison_figure, evaluate
from mirnet.metrics import psnr


def test_every_baseline_keeps_size_and_brightens(paired):
    pair = load_pairs(paired)[0]
    for name, method in BASELINES.items():
        out = method(pair.low)
        assert out.shape == pair.low.shape and out.dtype == np.uint8, name
        assert out.mean() > pair.low.mean() + 10, name


def test_simple_baselines_by_hand():
    image = np.array([[[10, 20, 30], [50, 60, 70]]], np.uint8)
    stretched = autocontrast(image)
    assert stretched[..., 0].tolist() == [[0, 255]]  # each channel stretched to its full range
    assert gamma_correction(np.array([[[0, 64, 255]]], np.uint8))[0, 0].tolist() == [
        0, round(255 * (64 / 255) ** (1 / 2.2)), 255]  # fmt: skip


def test_lime_recovers_a_uniformly_dark_image():
    # A flat grey scene at a quarter of its brightness: the illumination map is the max channel,
    # smooth already, so the output is image / T**0.8 with T = 0.25 * max.
    scene = np.zeros((20, 24, 3))
    scene[..., 0], scene[..., 1], scene[..., 2] = 0.8, 0.6, 0.4
    dark = np.round(scene * 0.25 * 255).astype(np.uint8)
    t = dark.max() / 255.0
    expected = np.clip(dark / 255.0 / t**0.8 * 255, 0, 255)
    assert np.abs(lime(dark).astype(float) - expected).max() <= 1.0


def test_lime_illumination_minimises_the_papers_objective():
    """The refined map zeroes the gradient of LIME's eq. 19, its weights written here from the paper
    (third strategy: W_d = 1 / (|G_sigma * d T_hat| + eps), then divided by |d T_hat| + eps), with
    SciPy's Gaussian filter where the method uses OpenCV's."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    t_hat = np.clip(np.linspace(0.1, 0.5, 20)[None, :] * (0.6 + 0.4 * rng.random((16, 20))), 0, 1)
    alpha, sigma, eps = 0.15, 2.0, 1e-3
    t = lime_illumination(t_hat, alpha, sigma, eps)

    def forward(a, axis):  # forward differences, none across the last row or column
        return np.diff(a, axis=axis, append=np.take(a, [-1], axis=axis))

    gradient = np.zeros_like(t)
    for axis in (0, 1):
        d_hat = forward(t_hat, axis)
        smoothed = gaussian_filter(d_hat, sigma, mode="mirror", truncate=3.0)  # OpenCV's reflect-101 border
        weight = 1.0 / ((np.abs(smoothed) + eps) * (np.abs(d_hat) + eps))
        flux = weight * forward(t, axis)  # alpha * W * dT is minus the divergence's argument
        back = np.diff(flux, axis=axis, prepend=np.zeros_like(np.take(flux, [0], axis=axis)))
        gradient -= alpha * back  # D^T (W D t): the adjoint of the forward difference
    gradient += t - t_hat
    scale = np.abs(t_hat).max()
    assert np.abs(gradient).max() < 1e-6 * scale
    # The smoothing takes the texture out of T, and (differences summing to zero) keeps its mean.
    assert np.std(np.diff(t, axis=0)) < 0.2 * np.std(np.diff(t_hat, axis=0))
    assert t.mean() == pytest.approx(t_hat.mean(), abs=1e-9)


def test_evaluate_scores_methods_and_input(paired):
    pairs = load_pairs(paired)
    result = evaluate(pairs, {"identity": lambda im: im, "autocontrast": autocontrast}, keep_outputs=2)
    assert result.methods == ["input", "identity", "autocontrast"]
    assert len(result.rows) == 3 * len(pairs)
    means = {m["method"]: m for m in result.means()}
    assert means["identity"]["psnr"] == pytest.approx(np.mean([psnr(p.low, p.high) for p in pairs]))
    assert means["identity"]["psnr"] == means["input"]["psnr"]
    assert set(result.outputs["autocontrast"]) == {pairs[0].stem, pairs[1].stem}


def test_tables_in_csv_json_markdown(paired, tmp_path):
    pairs = load_pairs(paired)
    result = evaluate(pairs, {"autocontrast": autocontrast})
    written = result.write(tmp_path / "out")
    assert [p.name for p in written] == ["evaluation.csv", "evaluation.json", "evaluation.md"]
    lines = (tmp_path / "out" / "evaluation.csv").read_text().splitlines()
    assert lines[0] == "method,image,psnr,ssim,gt_mean_psnr" and len(lines) == 1 + 2 * len(pairs)
    assert float(lines[1].split(",")[2]) == pytest.approx(result.rows[0]["psnr"], abs=1e-9)
    data = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert {m["method"] for m in data["means"]} == {"input", "autocontrast"} and "peak 255" in data["conventions"]
    assert data["means"] == result.means() and data["images"] == result.rows
    md = (tmp_path / "out" / "evaluation.md").read_text()
    assert "| method | PSNR (dB) | SSIM | GT-mean PSNR (dB) |" in md
    assert md.count("| autocontrast |") == len(pairs) + 1


def test_comparison_figure_is_a_png(paired, tmp_path):
    pairs = load_pairs(paired)
    result = evaluate(pairs, {"autocontrast": autocontrast}, keep_outputs=3)
    path = comparison_figure(result, pairs, ["input", "autocontrast"], tmp_path / "fig.png", images=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[1] > 200
    with pytest.raises(ValueError, match="keep_outputs"):
        comparison_figure(evaluate(pairs, {}), pairs, ["input"], tmp_path / "none.png")


def test_evaluate_cli_with_weights_and_baselines(paired, tmp_path):
    model = mirnet.create_model("ablation-1x1", channels=4)
    mirnet.save_weights(model, tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-m", "mirnet", "evaluate", "--data", str(paired), "--weights", str(tmp_path / "tiny.safetensors"),
         "--baselines", "--out", str(out), "--json", "--figure", "2", "--device", "cpu", "--precision", "fp32"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is one JSON object
    assert [m["method"] for m in report["means"]] == ["input", "mirnet", *BASELINES]
    assert (out / "evaluation.md").exists()
    # 2 rows of 9 panels: input, mirnet, 6 baselines, ground truth
    with Image.open(out / "comparison.png") as figure:
        assert figure.format == "PNG" and figure.size[0] > 2 * figure.size[1]
    table = subprocess.run([sys.executable, "-m", "mirnet", "evaluate", "--data", str(paired), "--baselines",
                            "--summary"], capture_output=True, text=True)  # fmt: skip
    assert table.returncode == 0 and "| histogram-eq |" in table.stdout and "| image |" not in table.stdout


def test_evaluate_cli_errors(paired, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "mirnet", "evaluate", *a], capture_output=True, text=True)  # noqa: E731
    result = run("--data", str(paired))
    assert result.returncode == 2 and "nothing to evaluate" in result.stderr
    result = run("--data", str(tmp_path / "absent"), "--baselines")
    assert result.returncode == 2 and "absent/low: no such folder" in result.stderr
    result = run("--data", str(paired), "--model", "no-such-model")
    assert result.returncode == 2 and "no-such-model: neither a known model" in result.stderr
    result = run("--data", str(paired), "--model", "lol-micro", "--device", "cpu", "--precision", "fp16")
    assert result.returncode == 2 and "fp16 autocast is for CUDA" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_refuses_an_output_it_cannot_use_before_any_work(paired, tmp_path, monkeypatch, capsys):
    import mirnet.evaluate
    from mirnet.cli import main

    monkeypatch.setattr(mirnet.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated before --out was checked"))
    (tmp_path / "mine.txt").write_text("mine")
    for out, problem in ((tmp_path / "mine.txt", "exists and is not a folder"),
                         (paired / "low" / "reports", "inside the data's low/ or high/ folder"),
                         (paired / "high", "inside the data's low/ or high/ folder")):  # fmt: skip
        assert main(["evaluate", "--data", str(paired), "--model", "lol-micro", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mirnet: error: {out}: ") and problem in err and err.count("\n") == 1
    assert (tmp_path / "mine.txt").read_text() == "mine" and not (paired / "low" / "reports").exists()


def test_bf16_model_method_matches_the_enhancer_and_leaves_the_model_fp32():
    from mirnet.data import to_tensor, to_uint8
    from mirnet.enhance import Enhancer
    from mirnet.evaluate import model_method
    from mirnet.runtime import select_runtime

    torch.manual_seed(0)
    model = mirnet.create_model("paper", channels=8, num_rrg=1, num_mrb=1, num_streams=2)
    method = model_method(model, select_runtime("cpu", "bf16"))
    assert next(model.parameters()).dtype == torch.float32
    image = np.random.default_rng(0).integers(0, 80, (24, 32, 3), dtype=np.uint8)
    expected = Enhancer(model, device="cpu", precision="bf16").enhance_tensor(to_tensor(image)[None])
    assert np.array_equal(method(image), to_uint8(expected[0]))


def test_model_forward_is_the_unrounded_output_of_model_method():
    from mirnet.data import to_tensor, to_uint8
    from mirnet.evaluate import model_forward, model_method
    from mirnet.runtime import select_runtime

    torch.manual_seed(0)
    model = mirnet.create_model("paper", channels=8, num_rrg=1, num_mrb=1, num_streams=2)
    runtime = select_runtime("cpu", "fp32")
    image = np.random.default_rng(1).integers(0, 80, (24, 32, 3), dtype=np.uint8)
    out = model_forward(model, runtime)(to_tensor(image)[None])
    assert out.dtype == torch.float32 and out.shape == (1, 3, 24, 32)
    assert 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, out.mul(255).round().div(255))  # not yet rounded to 8 bits
    assert np.array_equal(model_method(model, runtime)(image), to_uint8(out[0]))


def test_a_perfect_score_is_written_as_strict_json(tmp_path):
    from mirnet.cli import main

    for side in ("low", "high"):  # the input equals its reference: infinite PSNR
        (tmp_path / "same" / side).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "same" / side / "1.png")
    assert main(["evaluate", "--data", str(tmp_path / "same"), "--baselines", "--out", str(tmp_path / "out"),
                 "--figure", "0"]) == 0  # fmt: skip
    strict = json.loads((tmp_path / "out" / "evaluation.json").read_text(),
                        parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))  # fmt: skip
    assert next(r for r in strict["means"] if r["method"] == "input")["psnr"] is None


def test_baselines_without_their_extra_are_a_one_line_error(paired, tmp_path, monkeypatch, capsys):
    import importlib.util

    from mirnet.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cv2" else real(name, *a))
    assert main(["evaluate", "--data", str(paired), "--baselines"]) == 2
    err = capsys.readouterr().err
    assert "needs the baselines extra" in err and "missing cv2" in err and len(err.strip().splitlines()) == 1


def test_a_method_cannot_take_the_input_rows_name(paired):
    with pytest.raises(ValueError, match="'input' names the low-light image"):
        evaluate(load_pairs(paired), {"input": lambda image: image})


def test_compare_recipes_plots_runs_and_tables_them_epoch_by_epoch(tmp_path):
    header = "epoch,step,train_loss,val_loss,val_psnr,val_ssim,lr,time,steps_per_s\n"
    rows = "1,100,0.3,0.1,20.0,0.80,1e-3,60,2\n2,200,0.2,0.1,22.0,0.82,1e-3,120,2\n"
    (tmp_path / "a.csv").write_text(header + rows)
    (tmp_path / "b.csv").write_text(header + "1,100,0.3,0.1,21.5,0.81,1e-3,50,2\n")
    runs = [f"seed 0={tmp_path / 'a.csv'}", f"seed 1={tmp_path / 'b.csv'}"]
    result = run_script("compare_recipes.py", *runs, "--out", tmp_path / "r.png", "--per-epoch")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| seed 0 | 1 | 200 | 2.0 | 22.00 | 0.8200 |" in lines
    assert "| 1 | 1 | 20.00 / 0.8000 | 21.50 / 0.8100 | 1.50 |" in lines  # spread: highest - lowest PSNR
    assert "| 1 | 2 | 22.00 / 0.8200 | - | - |" in lines
    with Image.open(tmp_path / "r.png") as figure:
        assert figure.format == "PNG"


@pytest.fixture
def ship_model(monkeypatch):
    """scripts/ship_model.py imported as a module, for its helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_model", SCRIPTS / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ship_model", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_ship_model_carries_a_cards_earlier_versions_over(ship_model):
    """A re-shipped model's card is written anew, but the entries of the models it replaced stay."""
    history = "## Earlier versions\n\n### v1\n\nTrained in fp32.\n"
    assert ship_model.earlier_versions(f"# m\n\n## Training\n\nx\n\n{history}") == history
    assert ship_model.earlier_versions(f"# m\n\n{history}\n## Later\n\ny\n") == history
    assert ship_model.earlier_versions("# m\n\n## Training\n\nno history here\n") == ""


def test_ship_model_says_how_a_stage_length_was_set(ship_model):
    """A timed stage on all pairs (--budget ... --split full) was never validated: the card must not say it was."""
    timed = {"train_time": 5940, "steps_per_epoch": 1200, "epochs": None}
    assert ship_model._length(timed, validated=True) == "99 minutes of training, validated every 1200 steps"
    assert ship_model._length(timed, validated=False) == "99 minutes of training, in epochs of 1200 steps"
    passes = {"train_time": 600, "steps_per_epoch": None, "epochs": None}
    assert ship_model._length(passes, validated=True) == "10 minutes of training, validated every epoch"
    assert ship_model._length(passes, validated=False) == "10 minutes of training, in epochs of one pass over the pairs"
    assert ship_model._length({"epochs": 18, "steps_per_epoch": 1200}, validated=False) == "18 epochs of 1200"


def test_paired_difference_summarises_b_minus_a_per_image(tmp_path):
    header = "method,image,psnr,ssim,gt_mean_psnr\n"
    (tmp_path / "a.csv").write_text(header + "input,1,5,0.1,9\nmirnet,1,20,0.80,25\nmirnet,2,22,0.90,26\n")
    (tmp_path / "b.csv").write_text(header + "mirnet,1,21,0.82,25\nmirnet,2,22.5,0.89,27\n")
    (tmp_path / "c.csv").write_text(header + "mirnet,1,21,0.82,25\nmirnet,3,22.5,0.89,27\n")
    result = run_script("paired_difference.py", tmp_path / "a.csv", tmp_path / "b.csv")
    assert result.returncode == 0, result.stderr
    # PSNR: differences +1 and +0.5: mean 0.75, sd 0.35, standard error 0.25; the input row is ignored
    assert "| psnr | +0.75 | 0.35 | 0.25 | 2 of 2 |" in result.stdout
    assert "| ssim | +0.0050 | 0.0212 | 0.0150 | 1 of 2 |" in result.stdout
    mismatch = run_script("paired_difference.py", tmp_path / "a.csv", tmp_path / "c.csv")
    assert mismatch.returncode == 1 and "score different images" in mismatch.stderr
    assert len(mismatch.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_epoch_table_lists_each_stages_epochs_and_marks_one_cut_short(tmp_path):
    header = "epoch,step,train_loss,val_loss,val_psnr,val_ssim,lr,time,steps_per_s\n"
    (tmp_path / "s1.csv").write_text(header + "1,1200,0.3,0.1,20.004,0.80011,9.9e-4,360,3.333\n"
                                     "2,1905,0.2,0.1,21.5,0.81,1e-6,600,2.9\n")  # fmt: skip
    (tmp_path / "s2.csv").write_text(header + "1,450,0.2,,,,2e-4,150,3\n")  # no held-out pairs
    result = run_script("epoch_table.py", tmp_path / "s1.csv", tmp_path / "s2.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2:] == ["| 1 | 1 | 1,200 | 20.00 / 0.8001 | 9.90e-04 | 6.0 | 3.33 |",
                         "| 1 | 2 (705 steps) | 1,905 | 21.50 / 0.8100 | 1.00e-06 | 10.0 | 2.90 |",
                         "| 2 | 1 | 450 | - | 2.00e-04 | 2.5 | 3.00 |"]  # fmt: skip
    missing = run_script("epoch_table.py", tmp_path / "nope.csv")
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_compare_recipes_tables_training_losses_and_places_the_first_run_among_the_others(tmp_path):
    header = "epoch,step,train_loss,val_loss,val_psnr,val_ssim,lr,time,steps_per_s\n"
    (tmp_path / "full.csv").write_text(header + "1,100,0.30,,,,1e-3,60,2\n2,200,0.19,,,,1e-3,120,2\n")
    (tmp_path / "a.csv").write_text(header + "1,100,0.28,0.1,20.0,0.80,1e-3,60,2\n2,200,0.20,0.1,21.0,0.81,1e-3,120,2\n")
    (tmp_path / "b.csv").write_text(header + "1,100,0.31,0.1,20.5,0.80,1e-3,60,2\n2,200,0.22,0.1,21.5,0.82,1e-3,120,2\n")
    runs = [f"{name}={tmp_path / name}.csv" for name in ("full", "a", "b")]
    result = run_script("compare_recipes.py", *runs, "--out", tmp_path / "loss.png", "--train-loss")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "| full | 1 | 200 | 2.0 | - | - |" in lines  # no validation: no best epoch to show
    assert "| 1 | 1 | 0.3000 | 0.2800 | 0.3100 | 0.0000 |" in lines  # inside [0.28, 0.31]
    assert "| 1 | 2 | 0.1900 | 0.2000 | 0.2200 | 0.0100 |" in lines  # 0.01 under the others' lowest
    assert "full: inside the others' range at 1 of 2 epochs, at most 0.0100 outside" in lines
    with Image.open(tmp_path / "loss.png") as figure:
        assert figure.format == "PNG"


def test_candidates_table_reads_runs_clocks_printouts_and_eval15_tables(tmp_path):
    """scripts/candidates.py: time is the stages' clocks less the minutes stopped; held-out scores come
    from either printout's row; parameters and GMACs are counted from the architecture."""
    stage = "epoch,step,train_loss,val_loss,val_psnr,val_ssim,lr,time,steps_per_s\n1,10,0.3,0.1,20,0.8,1e-3,{}.0,1\n"
    (tmp_path / "s1.csv").write_text(stage.format(3000))
    (tmp_path / "s2.csv").write_text(stage.format(600))
    (tmp_path / "printout.md").write_text("| model | params | GMACs @600x400 | PSNR (dB) | SSIM | GT-mean PSNR (dB) |\n"
                                          "| --- | ---: | ---: | ---: | ---: | ---: |\n"
                                          "| `runs/a/best.safetensors` | 1 | 1 | 22.40 | 0.8600 | 27.00 |\n")  # fmt: skip
    (tmp_path / "scenes.md").write_text("| model | all (65): PSNR / SSIM / GT-mean | seen |\n| --- | ---: | ---: |\n"
                                        "| `runs/b.safetensors` | 22.50 / 0.8610 / 27.20 | 22.0 / 0.87 / 27 |\n")  # fmt: skip
    (tmp_path / "e15.csv").write_text("method,image,psnr,ssim,gt_mean_psnr\ninput,1,7,0.2,18\nm,1,21,0.8,25\n"
                                      "input,2,8,0.2,18\nm,2,22,0.82,25\n")  # fmt: skip
    s = f"{tmp_path}/s1.csv {tmp_path}/s2.csv"
    (tmp_path / "list.csv").write_text(
        "label,architecture,cpu,stages,paused_min,paused_source,scores,row,eval15\n"
        f'three,{{}},cpu A,{s},10,notes,{tmp_path}/printout.md,runs/a/best.safetensors,{tmp_path}/e15.csv\n'
        f'"two, untied","{{""num_streams"": 2, ""share_weights"": false}}",cpu B,{s},0,,{tmp_path}/scenes.md,'
        "runs/b.safetensors,\n")  # fmt: skip
    result = run_script("candidates.py", tmp_path / "list.csv", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "out" / "candidates.md").read_text()
    assert "| two, untied | cpu B | 87,991 | 9.4 | 60.0 | 22.50 / 0.8610 | - |" in table  # listed first: higher
    assert "| three | cpu A | 333,392 | 18.9 | 50.0 | 22.40 / 0.8600 | 21.50 / 0.8100 |" in table
    assert table.index("two, untied") < table.index("| three |")
    assert (tmp_path / "out" / "candidates.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "printout.md").write_text("| model | PSNR (dB) | SSIM |\n| --- | ---: | ---: |\n")
    missing = run_script("candidates.py", tmp_path / "list.csv", "--out", tmp_path / "out")
    assert missing.returncode == 1 and "printout.md: no row `runs/a/best.safetensors`" in missing.stderr
