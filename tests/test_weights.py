"""Weights on disk: our safetensors files and the official MIRNet checkpoint format."""

import argparse
import os
import pickle

import pytest
import torch

import mirnet
from mirnet import WeightsError, create_model, load_official_checkpoint, official_state_dict

TINY = 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _perturbed(model):
    """Random non-default values everywhere (PReLU slopes included), so a wrong mapping shows."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def _same_function(a, b, size=(1, 3, 24, 40)):
    x = torch.rand(*size)
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def test_official_layout_of_the_paper_preset():
    with torch.device("meta"):
        model = mirnet.MIRNet(mirnet.preset("paper"))
    state = official_state_dict(model)
    # The official MIRNet() state_dict has 797 entries, 48 of them the blur-pool `filt` constants.
    assert len(state) == 797
    assert sum(key.endswith(".filt") for key in state) == 48
    for key in [
        "conv_in.weight",
        "body.2.body.2.weight",  # the RRG's closing conv
        "body.0.body.1.blocks.2.1.CA.conv_du.2.weight",
        "body.0.body.0.blocks.0.1.body.1.weight",  # the PReLU shared by all DAUs
        "body.1.body.0.down.64_4.body.1.top.4.filt",
        "body.1.body.0.up.256_2.body.0.top.2.weight",  # transposed conv
        "body.0.body.0.last_up.2.body.1.bot.1.weight",
        "body.0.body.0.selective_kernel.1.fcs.2.weight",
    ]:
        assert key in state, key
    assert state["body.1.body.0.up.256_2.body.0.top.2.weight"].shape == (256, 256, 3, 3)
    assert state["body.1.body.0.down.64_4.body.1.top.4.filt"].shape == (128, 1, 3, 3)


@pytest.mark.parametrize("data_parallel", [False, True])
def test_official_checkpoint_round_trip(tmp_path, data_parallel):
    model = _perturbed(create_model("paper", channels=TINY))
    path = tmp_path / "model_epoch_3.pth"
    mirnet.save_official_checkpoint(model, path, epoch=3)
    if data_parallel:  # as saved from nn.DataParallel by the official training script
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["state_dict"] = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
        torch.save(checkpoint, path)
    loaded = load_official_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert _same_function(model, loaded) == 0.0
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_official_loader_infers_other_layouts(tmp_path):
    model = _perturbed(create_model("paper", channels=TINY, num_rrg=2, num_mrb=1, num_streams=4, daus_per_stream=3))
    mirnet.save_official_checkpoint(model, tmp_path / "c.pth")
    loaded = load_official_checkpoint(tmp_path / "c.pth")
    assert loaded.config == model.config
    assert _same_function(model, loaded, size=(1, 3, 32, 24)) == 0.0


def test_official_loader_accepts_a_bare_state_dict(tmp_path):
    model = _perturbed(create_model("ablation-1x1", channels=TINY))
    torch.save(official_state_dict(model), tmp_path / "bare.pth")
    assert _same_function(model, load_official_checkpoint(tmp_path / "bare.pth")) == 0.0


def _official_file(tmp_path, edit):
    state = official_state_dict(create_model("ablation-1x1", channels=TINY))
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("body.0.body.0.conv_out.weight"), "missing body.0.body.0.conv_out.weight"),
        (lambda s: s.__setitem__("body.0.extra.weight", torch.zeros(1)), "unexpected tensors.*body.0.extra"),
        (lambda s: s.__setitem__("conv_out.weight", torch.zeros(3, 8, 5, 5)), r"conv_out.weight has shape \(3, 8, 5, 5\)"),
        (lambda s: s.pop("conv_in.weight"), "no conv_in.weight"),
        (lambda s: s["body.0.body.0.blocks.1.1.conv1x1.weight"].add_(1.0), "differs from the tensor it shares"),
        (lambda s: s.pop("body.0.body.0.blocks.0.0.CA.conv_du.0.weight"), "no channel attention in its first DAU"),
        (lambda s: s.__setitem__("body.0.body.0.blocks.0.0.CA.conv_du.0.weight", torch.zeros(0, 8, 1, 1)),
         "no channel attention in its first DAU"),
        (lambda s: s.__setitem__(7, torch.zeros(1)), "no state_dict of named tensors"),
        (lambda s: s.__setitem__("conv_in.weight", torch.zeros(8)), "not a 2-D convolution"),
        (lambda s: s.__setitem__(next(k for k in s if k.endswith(".filt")), torch.zeros(5, 5)), "blur filter"),
    ],
)
def test_official_loader_rejects_tensors_that_do_not_fit(tmp_path, edit, message):
    with pytest.raises(WeightsError, match=message):
        load_official_checkpoint(_official_file(tmp_path, edit))


def test_official_loader_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.pth"
    with pytest.raises(WeightsError, match=f"{missing}: no such file"):
        load_official_checkpoint(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth: not a readable torch checkpoint"):
        load_official_checkpoint(garbage)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(WeightsError, match="list.pth: not an official MIRNet checkpoint"):
        load_official_checkpoint(listing)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_official_loader_never_runs_pickled_code(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": _Exploit(marker)}, f, protocol=2)
    with pytest.raises(WeightsError, match="evil.pth: not a readable torch checkpoint") as raised:
        load_official_checkpoint(path)
    assert not os.path.exists(marker)
    # One line, with torch's reason, and without its advice to load the file in a way that runs its code.
    message = str(raised.value)
    assert "\n" not in message and "weights_only" not in message and "weights-only reader" in message
    # torch words its refusals in several ways; each gives its reason, never its advice.
    namespace = tmp_path / "namespace.pth"
    torch.save({"args": argparse.Namespace(lr=1e-4), "state_dict": {}}, namespace)
    with pytest.raises(WeightsError) as raised:
        load_official_checkpoint(namespace)
    assert str(raised.value) == (f"{namespace}: not a readable torch checkpoint (refused by torch's weights-only "
                                 "reader, which never runs a file's code: Unsupported global: GLOBAL argparse.Namespace)")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty.pth: empty file$"):
        load_official_checkpoint(tmp_path / "empty.pth")


def test_a_pt_file_beside_another_tools_config_is_read_as_an_official_checkpoint(tmp_path):
    model = create_model("paper", channels=8, num_rrg=1, num_mrb=1, num_streams=2)
    mirnet.save_official_checkpoint(model, tmp_path / "model.pt")
    (tmp_path / "config.json").write_text('{"architectures": ["Other"]}')  # e.g. a model hub's
    assert _same_function(mirnet.load_model(tmp_path / "model.pt"), model) < 1e-6


def test_official_loader_says_what_is_missing_and_refuses_a_folder(tmp_path):
    partial = tmp_path / "partial.pth"
    torch.save({"conv_in.weight": torch.zeros(8, 3, 3, 3)}, partial)
    with pytest.raises(WeightsError, match="partial.pth: not a MIRNet checkpoint \\(no tensors of its first MRB"):
        load_official_checkpoint(partial)
    (tmp_path / "folder.pth").mkdir()
    with pytest.raises(WeightsError, match="folder.pth: a folder, not a checkpoint file"):
        load_official_checkpoint(tmp_path / "folder.pth")


@pytest.mark.parametrize("share", [True, False])
def test_safetensors_round_trip_keeps_config_metadata_and_function(tmp_path, share):
    model = _perturbed(create_model("ablation-3x1", channels=TINY, share_weights=share))
    path = tmp_path / "w.safetensors"
    mirnet.save_weights(model, path, metadata={"trained_on": "LOL", "psnr": 21.5})
    loaded = mirnet.load_weights(path)
    assert loaded.config == model.config
    assert _same_function(model, loaded) == 0.0
    meta = mirnet.weights.read_metadata(path)
    assert meta["trained_on"] == "LOL" and meta["psnr"] == 21.5
    # Shared tensors are stored once: the file is about the size of the unique parameters.
    assert path.stat().st_size < 4 * mirnet.count_parameters(model) * 1.1 + 20_000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_safetensors_saves_channels_last_models(tmp_path):
    model = _perturbed(create_model("paper", channels=TINY)).to(memory_format=torch.channels_last)
    mirnet.save_weights(model, tmp_path / "cl.safetensors")
    assert _same_function(model, mirnet.load_weights(tmp_path / "cl.safetensors")) < 1e-5
    assert model.conv_in.weight.is_contiguous(memory_format=torch.channels_last)  # the caller's model untouched


def test_safetensors_errors(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        mirnet.load_weights(tmp_path / "absent.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match="bad.safetensors: not a safetensors weights file"):
        mirnet.load_weights(bad)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(WeightsError, match="not mirnet weights"):
        mirnet.load_weights(foreign)


def test_failed_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"previous contents")

    class Broken(torch.nn.Module):
        config = mirnet.preset("ablation-1x1", channels=TINY)

        def state_dict(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        mirnet.save_weights(Broken(), path)
    assert path.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_weights_that_do_not_fit_their_config_are_one_short_line(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    mirnet.save_weights(create_model("ablation-1x1", channels=TINY), path)
    with safe_open(str(path), "pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    record = json.loads(header["mirnet"])
    record["config"]["channels"] = 2 * TINY  # the header now describes another model
    save_file(tensors, str(path), metadata={**header, "mirnet": json.dumps(record)})
    with pytest.raises(WeightsError) as caught:
        mirnet.load_weights(path)
    message = str(caught.value)
    assert "\n" not in message and "size mismatch" in message and "more)" in message and len(message) < 400
