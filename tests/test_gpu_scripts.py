"""The scripts that carry LOL to a lent GPU machine in parts and train the paper preset there,
run here on small synthetic data (the GPU run's own command, with a tiny model on the CPU)."""

import os
import subprocess
import sys
import tarfile

import numpy as np
from conftest import SCRIPTS, make_pairs, run_script

from mirnet import load_model
from mirnet.data import find_pairs, load_pairs, read_rgb, split_by_scene


def fake_lol(root):
    make_pairs(root / "our485", count=14, size=(40, 56))  # copied as they are, PNG or WebP
    make_pairs(root / "eval15", count=3, size=(40, 56), seed=1)
    return root


def pairs_mib(lol, pairs: int) -> float:
    """A part size (MiB) that holds about this many of lol's largest pairs."""
    largest = max(low.stat().st_size + high.stat().st_size for _, low, high in find_pairs(lol / "our485"))
    return pairs * largest / 2**20


def test_pack_lol_parts_splits_as_training_does_and_fits_its_parts(tmp_path):
    lol = fake_lol(tmp_path / "LOL")
    part_mib = pairs_mib(lol, 4)
    result = run_script("pack_lol_parts.py", "--lol", lol, "--out", tmp_path / "parts", "--part-mb", part_mib,
                        "--val-pairs", 3, "--eval15")  # fmt: skip
    assert result.returncode == 0, result.stderr
    parts = sorted((tmp_path / "parts").iterdir())
    assert len(parts) >= 2, result.stdout
    merged = tmp_path / "merged"
    for part in parts:
        images = [f for f in part.rglob("*") if f.is_file() and not f.name.startswith("part-")]
        size = sum(f.stat().st_size for f in images)
        assert size <= part_mib * 2**20, f"{part.name}: {size} bytes"
        subprocess.run(["cp", "-a", f"{part}/.", str(merged)], check=True)

    train, held = split_by_scene(load_pairs(lol / "our485"), 3, 0)
    assert {stem for stem, _, _ in find_pairs(parts[0] / "val")} == {p.stem for p in held}  # part 1 first
    assert {stem for stem, _, _ in find_pairs(merged / "train")} == {p.stem for p in train}
    for folder in ("train", "val"):
        for stem, low, high in find_pairs(merged / folder):  # copied byte for byte
            assert low.read_bytes() == (lol / "our485" / "low" / low.name).read_bytes()
            assert high.read_bytes() == (lol / "our485" / "high" / high.name).read_bytes()
    eval15 = find_pairs(merged / "eval15")
    assert [stem for stem, _, _ in eval15] == ["0", "1", "2"]
    for stem, low, high in eval15:  # PNG re-encoded as lossless WebP: the same pixels
        assert low.suffix == ".webp"
        assert np.array_equal(read_rgb(low), read_rgb(lol / "eval15" / "low" / f"{stem}.png"))
        assert np.array_equal(read_rgb(high), read_rgb(lol / "eval15" / "high" / f"{stem}.png"))

    again = run_script("pack_lol_parts.py", "--lol", lol, "--out", tmp_path / "parts")
    assert again.returncode != 0 and "exists" in again.stderr
    tiny = run_script("pack_lol_parts.py", "--lol", lol, "--out", tmp_path / "tiny", "--part-mb", 0.001,
                      "--val-pairs", 3)  # fmt: skip
    assert tiny.returncode != 0 and "more than --part-mb 0.001" in tiny.stderr
    many = run_script("pack_lol_parts.py", "--lol", lol, "--out", tmp_path / "many")
    assert many.returncode != 0 and "cannot hold out 64 of 14 pairs" in many.stderr
    assert "Traceback" not in many.stderr


def test_gpu_paper_run_receives_parts_trains_and_packs_its_results(tmp_path):
    lol = fake_lol(tmp_path / "LOL")
    packed = run_script("pack_lol_parts.py", "--lol", lol, "--out", tmp_path / "parts",
                        "--part-mb", pairs_mib(lol, 6), "--val-pairs", 3, "--eval15")  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    count = len(list((tmp_path / "parts").iterdir()))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PARTS": str(tmp_path / "parts"), "LOL": str(tmp_path / "lol"),
           "WORK": str(tmp_path / "work"), "PYTHON": sys.executable, "OUT": str(out)}  # fmt: skip
    tiny = ["--channels", "4", "--model-config", '{"num_rrg": 1, "num_mrb": 1}', "--crop", "32",
            "--batch-size", "2", "--device", "cpu"]  # fmt: skip
    receive = [word for n in range(1, count + 1) for word in ("receive", str(n))]
    command = ["bash", str(SCRIPTS / "gpu_paper_run.sh"), *receive, "train", "4", "3", *tiny]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"{tmp_path / 'lol'}/train: 11 pairs" in result.stdout

    chunks = sorted(out.glob("paper-fp16.safetensors.part*"))
    assert len(chunks) == 5
    weights = tmp_path / "joined.safetensors"
    weights.write_bytes(b"".join(c.read_bytes() for c in chunks))
    model = load_model(weights)  # fp16 on disk, loaded as fp32
    assert model.config.channels == 4 and model.config.num_rrg == 1
    with tarfile.open(out / "results.tgz") as tar:
        names = set(tar.getnames())
    for name in ("./metrics.csv", "./config.json", "./train.log", "./validation/evaluation.csv",
                 "./eval15/evaluation.csv", "./eval15/comparison.png", "./paper-fp16.sha256"):  # fmt: skip
        assert name in names
    assert not any(name.endswith((".pt", ".safetensors")) for name in names)

    # The smoke test: the run's command for 12 steps on the validation pairs, then the same packing.
    for stale in out.iterdir():
        stale.unlink()
    smoke = subprocess.run(["bash", str(SCRIPTS / "gpu_paper_run.sh"), "smoke", *tiny], check=False, env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    assert len(list(out.glob("paper-fp16.safetensors.part*"))) == 5 and (out / "results.tgz").exists()

    # A run that fails still brings back its log.
    (out / "results.tgz").unlink()
    command = ["bash", str(SCRIPTS / "gpu_paper_run.sh"), "train", "4", "3", *tiny, "--crop", "999"]
    failed = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    with tarfile.open(out / "results.tgz") as tar:
        log = tar.extractfile("./train.log").read().decode()
    assert "999" in log
    lost = subprocess.run(["bash", str(SCRIPTS / "gpu_paper_run.sh"), "train", "4", "3"], check=False,
                          env={**env, "WORK": str(tmp_path)}, capture_output=True, text=True)  # fmt: skip
    assert lost.returncode == 2 and "which train would delete" in lost.stderr and (tmp_path / "lol").exists()
    refused = subprocess.run(["bash", str(SCRIPTS / "gpu_paper_run.sh"), "fly"], check=False, env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "unknown step fly" in refused.stderr
