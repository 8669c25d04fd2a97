"""Paired data (discovery, checks, splits, crops) and the metrics, against values computed by hand."""

import math

import numpy as np
import pytest
import torch
from conftest import make_pairs, run_script
from PIL import Image

from mirnet.data import (SAME_SCENE, CropSampler, DataError, Pair, dihedral, find_pairs, load_pairs,
                         nearest_scenes, scene_thumbnail, split_by_scene)
from mirnet.metrics import gt_mean_psnr, psnr, ssim


def test_pairs_match_by_stem_across_formats(tmp_path):
    root = make_pairs(tmp_path / "d", count=3)
    Image.open(root / "low" / "2.png").save(root / "low" / "2.webp", lossless=True)
    (root / "low" / "2.png").unlink()
    (root / "notes.txt").write_text("ignored")
    pairs = load_pairs(root)
    assert [p.stem for p in pairs] == ["0", "1", "2"]
    assert pairs[2].low.dtype == np.uint8 and pairs[2].low.shape == (48, 64, 3)
    assert np.array_equal(pairs[2].low, np.asarray(Image.open(root / "low" / "2.webp").convert("RGB")))


def test_natural_order_of_numeric_stems(tmp_path):
    root = make_pairs(tmp_path / "d", count=11)
    assert [s for s, _, _ in find_pairs(root)][-3:] == ["8", "9", "10"]


def test_data_errors_name_the_files(tmp_path, monkeypatch):
    root = make_pairs(tmp_path / "d", count=3)
    (root / "high" / "1.png").unlink()
    with pytest.raises(DataError, match=r"without a partner: .*low/1\.png$"):
        find_pairs(root)
    Image.new("RGB", (64, 48)).save(root / "high" / "1.gif")  # a partner in a format not read
    with pytest.raises(DataError, match=r"without a partner: .*low/1\.png \(.*high/1\.gif not read: not one of \.bmp "):
        find_pairs(root)

    root = make_pairs(tmp_path / "e", count=2)
    Image.new("RGB", (10, 10)).save(root / "high" / "0.png")
    with pytest.raises(DataError, match=r"low/0\.png is 64x48 but .*high/0\.png is 10x10"):
        load_pairs(root)

    root = make_pairs(tmp_path / "f", count=2)
    (root / "low" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"low/1\.png: cannot read image"):
        load_pairs(root)

    root = make_pairs(tmp_path / "bomb", count=2)  # 64x48 images, over a limit of 1,000 pixels
    with monkeypatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow raises above twice its limit
        with pytest.raises(DataError, match=r"low/0\.png: too large to read safely \(Image size \(3072 pixels\)"):
            load_pairs(root)

    (tmp_path / "g" / "low").mkdir(parents=True)
    (tmp_path / "g" / "high").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_pairs(tmp_path / "g")
    with pytest.raises(DataError, match="no such folder"):
        find_pairs(tmp_path / "absent")


def _pair(stem, high_value, seed):
    high = np.full((8, 8, 3), high_value, np.uint8)
    return Pair(stem, np.random.default_rng(seed).integers(0, 30, (8, 8, 3), dtype=np.uint8), high)


def test_split_by_scene_keeps_shared_references_together():
    # Ten scenes, three shots each for the first five: 25 pairs.
    pairs = [_pair(f"{s}_{k}", s * 20, s * 10 + k) for s in range(10) for k in range(3 if s < 5 else 1)]
    train, val = split_by_scene(pairs, validation=8, seed=0)
    assert len(train) + len(val) == len(pairs) and 8 <= len(val) <= 10
    scenes = lambda ps: {p.stem.split("_")[0] for p in ps}  # noqa: E731
    assert not scenes(train) & scenes(val)
    assert split_by_scene(pairs, 8, seed=0)[1] == val  # fixed seed, fixed split
    assert [p.stem for p in split_by_scene(pairs, 8, seed=1)[1]] != [p.stem for p in val]


def test_crops_are_aligned_and_resumable():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    pairs = [Pair("a", image, 255 - image)]
    sampler = CropSampler(pairs, crop=16, batch_size=3, augment=True, seed=7)
    low, high = sampler.batch()
    assert low.shape == (3, 3, 16, 16) and low.dtype == torch.float32
    assert torch.allclose(high, 1 - low, atol=1e-6)  # the same window and transform on both
    state = sampler.state_dict()
    expected = sampler.batch()
    other = CropSampler(pairs, crop=16, batch_size=3, augment=True, seed=99)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other.batch(), expected))
    with pytest.raises(DataError, match="smaller than the 64px crop"):
        CropSampler(pairs, crop=64, batch_size=1, augment=False, seed=0)


def test_exposure_jitter_scales_the_low_crop_only_within_its_range():
    image = np.full((32, 32, 3), 40, dtype=np.uint8)  # dark and flat: a gain shows as a ratio
    pairs = [Pair("a", image, image.copy())]
    sampler = CropSampler(pairs, crop=16, batch_size=64, augment=False, seed=3, exposure_jitter=2.0)
    state = sampler.state_dict()
    low, high = sampler.batch()
    assert torch.allclose(high, torch.full_like(high, 40 / 255))  # the reference is never scaled
    gains = low.flatten(1).mean(1) / (40 / 255)
    assert gains.min() >= 0.5 - 1e-5 and gains.max() <= 2.0 + 1e-5
    assert (gains < 0.8).any() and (gains > 1.25).any()  # both directions drawn
    assert torch.allclose(low, low[:, :1, :1, :1].expand_as(low))  # one gain per crop, all pixels
    other = CropSampler(pairs, crop=16, batch_size=64, augment=False, seed=0, exposure_jitter=2.0)
    other.load_state_dict(state)
    assert torch.equal(other.batch()[0], low)  # the gains come from the checkpointed generator
    plain = CropSampler(pairs, crop=16, batch_size=4, augment=False, seed=3)
    assert torch.equal(plain.batch()[0], plain.batch()[1])
    with pytest.raises(ValueError, match="at least 1"):
        CropSampler(pairs, crop=16, batch_size=1, augment=False, seed=0, exposure_jitter=0.5)


def test_mixup_blends_pairs_of_the_batch_alike_and_resumes():
    # Each pair is one flat grey level, the reference twice the input's: a blend keeps that ratio.
    pairs = [Pair(str(v), np.full((16, 16, 3), v, np.uint8), np.full((16, 16, 3), 2 * v, np.uint8))
             for v in (10, 40, 70, 100)]  # fmt: skip
    sampler = CropSampler(pairs, crop=8, batch_size=32, augment=False, seed=1, mixup=1.0)
    state = sampler.state_dict()
    low, high = sampler.batch()
    levels = low.flatten(1).mean(1) * 255
    assert torch.allclose(high, 2 * low, atol=1e-5)  # the input and its reference blended alike
    assert not all(any(abs(level - v) < 0.5 for v in (10, 40, 70, 100)) for level in levels.tolist())
    assert levels.min() >= 10 - 1e-3 and levels.max() <= 100 + 1e-3
    other = CropSampler(pairs, crop=8, batch_size=32, augment=False, seed=0, mixup=1.0)
    other.load_state_dict(state)
    assert torch.equal(other.batch()[0], low)  # drawn from the checkpointed generator
    plain = CropSampler(pairs, crop=8, batch_size=32, augment=False, seed=1).batch()[0].flatten(1).mean(1) * 255
    assert all(any(abs(level - v) < 0.5 for v in (10, 40, 70, 100)) for level in plain.tolist())
    with pytest.raises(ValueError, match="from 0 to 1"):
        CropSampler(pairs, crop=8, batch_size=2, augment=False, seed=0, mixup=1.5)
    with pytest.raises(ValueError, match="batch of 2"):
        CropSampler(pairs, crop=8, batch_size=1, augment=False, seed=0, mixup=0.5)


def test_samplers_without_mixup_or_jitter_draw_only_the_crops():
    # Runs that predate these options must resume drawing exactly the crops they drew before.
    image = np.zeros((16, 20, 3), np.uint8)
    pairs = [Pair(str(v), image, image) for v in (1, 2, 3)]
    sampler = CropSampler(pairs, crop=8, batch_size=5, augment=False, seed=7, exposure_jitter=1.0, mixup=0.0)
    sampler.batch()
    expected = np.random.default_rng(7)
    expected.integers(3, size=5)
    for _ in range(5):
        expected.integers(16 - 8 + 1), expected.integers(20 - 8 + 1)
    assert sampler.rng.bit_generator.state == expected.bit_generator.state


def test_dihedral_gives_eight_distinct_transforms():
    a = np.arange(12).reshape(3, 4, 1)
    assert len({dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}) == 8


def test_psnr_by_hand():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 110, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))  # MSE 100: 28.1308 dB
    b[0, 0, 0] = 100  # one of 768 values now exact
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 * 767 / 768)))
    assert psnr(a, a) == math.inf


def test_ssim_by_hand():
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a = np.full((16, 16, 3), 50, np.uint8)
    b = np.full((16, 16, 3), 80, np.uint8)
    # Constant images: no variance, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1).
    assert ssim(a, b) == pytest.approx((2 * 50 * 80 + c1) / (50**2 + 80**2 + c1), rel=1e-9)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(x, x) == pytest.approx(1.0)
    # Inverting a pattern flips the sign of the structure term.
    assert ssim(x, 255 - x) < 0
    # Per-channel and averaged: a change in one channel only moves the mean by a third.
    y = x.copy()
    y[..., 0] = 255 - x[..., 0]
    per_channel = [ssim(np.repeat(x[..., [c]], 3, 2), np.repeat(y[..., [c]], 3, 2)) for c in range(3)]
    assert ssim(x, y) == pytest.approx(np.mean(per_channel))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[:8, :8], x[:8, :8])


def test_ssim_window_is_the_gaussian_of_wang_et_al():
    # A single bright pixel in the centre of a 11x11 image: only one 'valid' window position, so
    # the mean the window sees is 255 times the Gaussian's central weight.
    from mirnet.metrics import _gaussian_blur

    x = torch.zeros(1, 1, 11, 11, dtype=torch.float64)
    x[..., 5, 5] = 255.0
    g = np.exp(-(np.arange(11) - 5) ** 2 / (2 * 1.5**2))
    assert _gaussian_blur(x).item() == pytest.approx(255.0 * (1 / g.sum()) ** 2)


def test_gaussian_blur_filters_each_image_on_its_own_with_its_gradient():
    # The images run as the channels of one depthwise convolution: each must come out as if
    # filtered alone, and so must the gradient that flows back to it.
    from mirnet.metrics import _gaussian_blur

    x = torch.rand(5, 1, 20, 17, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(5, 1, 10, 7, dtype=torch.float64)
    together = _gaussian_blur(x)
    (together * weights).sum().backward()
    for i in range(5):
        alone = x[i : i + 1].detach().clone().requires_grad_(True)
        out = _gaussian_blur(alone)
        (out * weights[i : i + 1]).sum().backward()
        torch.testing.assert_close(out, together[i : i + 1].detach())
        torch.testing.assert_close(alone.grad, x.grad[i : i + 1])


def test_gt_mean_psnr_forgives_global_brightness_only():
    rng = np.random.default_rng(0)
    target = rng.integers(40, 200, (16, 16, 3)).astype(np.uint8)
    darker = (target.astype(np.float64) * 0.5).astype(np.uint8)
    assert gt_mean_psnr(darker, target) > psnr(darker, target) + 10
    assert gt_mean_psnr(target, target) == math.inf


def test_16bit_training_images_are_scaled_not_clipped(tmp_path):
    from mirnet.data import read_rgb

    deep = np.linspace(0, 65535, 20 * 30).reshape(20, 30).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgb = read_rgb(tmp_path / "deep.png")
    assert rgb.shape == (20, 30, 3) and rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert 100 < rgb[10, 15, 0] < 155  # mid-grey stays mid-grey (Pillow's convert makes it 255)


def test_nearest_scenes_finds_another_shot_of_a_scene_at_any_exposure():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    dark = (scene * 0.4).astype(np.uint8)  # the same layout shot darker: a new reference, not a copy
    thumb = scene_thumbnail(scene)
    assert thumb.shape == (48 * 32,) and abs(thumb.mean()) < 1e-9 and np.isclose(np.linalg.norm(thumb), 1)
    train = [Pair("a", scene, scene), Pair("b", other, other)]
    ((stem, same),) = nearest_scenes([Pair("q", dark, dark)], train)
    assert stem == "a" and same >= SAME_SCENE
    unrelated = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    ((_, apart),) = nearest_scenes([Pair("r", unrelated, unrelated)], train)
    assert apart < SAME_SCENE
    flat = np.full((32, 48, 3), 90, np.uint8)  # no layout: correlates with nothing, without dividing by 0
    assert nearest_scenes([Pair("f", flat, flat)], train)[0][1] == 0
    with pytest.raises(ValueError, match="no reference pairs"):
        nearest_scenes([Pair("q", dark, dark)], [])


def test_scene_overlap_marks_held_out_shots_of_training_scenes(tmp_path):
    data = make_pairs(tmp_path / "train", count=8)
    # Pair 7 becomes another shot of pair 0's scene: the same view, its reference a third brighter.
    high = np.asarray(Image.open(data / "high" / "0.png"), np.float64)
    Image.fromarray(np.clip(high * 1.3, 0, 255).astype(np.uint8)).save(data / "high" / "7.png")
    tests = make_pairs(tmp_path / "eval", count=2, seed=5)
    pairs = load_pairs(data)
    seed = next(k for k in range(20) if split_by_scene(pairs, 1, k)[1][0].stem in ("0", "7"))
    result = run_script("scene_overlap.py", "--data", data, "--eval", tests, "--val-pairs", 1, "--seed", seed,
                        "--models", "lol-micro", "--out", tmp_path / "out")  # fmt: skip
    assert result.returncode == 0, result.stderr
    held_out = result.stdout.split("Held-out pairs against")[1]
    assert "| 7 | 0 |" in held_out or "| 0 | 7 |" in held_out
    assert "1 of 1 show a scene of the training pairs" in result.stdout
    assert "0 of 2 show a scene" in result.stdout  # make_pairs' textures are new scenes
    written = (tmp_path / "out" / "scene-overlap.md").read_text()
    assert written.strip() == result.stdout.strip()
    assert "| `lol-micro` |" in written and "new scenes (0): PSNR" in written
    assert written.rstrip().endswith("| - |")  # no new scene to score
    per_image = (tmp_path / "out" / "evaluation.csv").read_text().splitlines()  # for paired_difference.py
    assert per_image[0] == "method,image,psnr,ssim,gt_mean_psnr" and len(per_image) == 1 + 2 * 1
    # eval15's tables by scene: test pair 1 made another shot of training pair 3's scene.
    Image.fromarray(np.clip(np.asarray(Image.open(data / "high" / "3.png"), np.float64) * 0.8, 0, 255)
                    .astype(np.uint8)).save(tests / "high" / "1.png")  # fmt: skip
    table = tmp_path / "evaluation.csv"
    table.write_text("method,image,psnr,ssim,gt_mean_psnr\ninput,0,8,0.2,18\ninput,1,10,0.4,20\n"
                     "m,0,20,0.8,24\nm,1,30,0.9,28\n")  # fmt: skip
    by_scene = ("scene_overlap.py", "--data", data, "--val-pairs", 1, "--eval", tests, "--eval-tables")
    result = run_script(*by_scene, table)
    assert result.returncode == 0, result.stderr
    assert "1 of 2 show a scene of the training pairs" in result.stdout
    means = "25.00 / 0.8500 / 26.00 | 30.00 / 0.9000 / 28.00 | 20.00 / 0.8000 / 24.00"  # all; 1 seen; 0 new
    assert f"| `{table}`: m | {means} |" in result.stdout
    assert f"| `{table}`: input | 9.00 / 0.3000 / 19.00 | 10.00 / 0.4000 / 20.00 |" in result.stdout
    table.write_text("method,image,psnr,ssim,gt_mean_psnr\nm,7,20,0.8,24\n")
    stray = run_script(*by_scene, table)
    assert stray.returncode == 1 and f"{table}: images not in {tests}: 7" in stray.stderr
    broken = run_script(*by_scene, tmp_path / "no.csv")
    assert broken.returncode == 1 and "no.csv: cannot be read" in broken.stderr
    missing = run_script("scene_overlap.py", "--data", tmp_path / "absent")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("scene_overlap.py: error: ") and "absent" in missing.stderr
