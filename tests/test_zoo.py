"""The bundled default model: present in the package, described by its record, and it brightens."""

from pathlib import Path

import numpy as np
import pytest

import mirnet
from mirnet.weights import WeightsError, read_metadata
from mirnet.zoo import BUNDLED, DEFAULT_MODEL, bundled_path


def test_every_bundled_model_ships_with_its_record():
    assert DEFAULT_MODEL in BUNDLED
    for name in BUNDLED:
        record = read_metadata(bundled_path(name))
        model = mirnet.load_model(name)
        assert record["parameters"] == mirnet.count_parameters(model)
        scores = record["metrics"]["eval15"]
        assert 0 < scores["psnr"] < 40 and 0 < scores["ssim"] <= 1
        program = record["training"]["command"].split()[0]  # ./run.sh train ..., or a script of the repo
        assert (Path(__file__).parents[1] / program).is_file(), record["training"]["command"]
        assert bundled_path(name).stat().st_size < 8_000_000  # a few MB at most


def test_default_model_is_the_compact_preset_with_two_streams_and_brightens_a_dark_image():
    model = mirnet.load_model()
    assert model.config == mirnet.preset("compact", num_streams=2)  # v6: the compact preset less a stream
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64] / 64
    scene = np.stack([0.5 + 0.4 * np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(3)], axis=-1)
    dark = (scene * 0.08 * 255 + rng.normal(0, 1.5, scene.shape)).clip(0, 255).astype(np.uint8)
    out = mirnet.enhance(dark, device="cpu")
    assert out.shape == dark.shape
    assert out.mean() > 4 * dark.mean()  # a trained model lifts the exposure a lot


def test_unknown_model_name():
    with pytest.raises(WeightsError, match="neither a known model"):
        mirnet.load_model("no-such-model")


def test_load_model_reads_file_suffixes_in_any_case(tmp_path):
    import torch

    model = mirnet.create_model("paper", channels=8).eval()
    mirnet.save_weights(model, tmp_path / "MODEL.SAFETENSORS")
    mirnet.save_official_checkpoint(model, tmp_path / "MODEL_LOL.PTH")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for name in ("MODEL.SAFETENSORS", "MODEL_LOL.PTH"):
            assert torch.equal(mirnet.load_model(tmp_path / name)(x), model(x)), name
    with pytest.raises(WeightsError, match="neither a known model"):
        mirnet.load_model(tmp_path / "MODEL.TXT")
