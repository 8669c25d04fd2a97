"""`mirnet enhance` and mirnet.enhance(): any photo in, the same kind out, bad input reported, inputs untouched."""

import hashlib
import json
import io
import os
import signal
import warnings
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import mirnet
from conftest import run_script
from mirnet.cli import main
from mirnet.enhance import Enhancer, ImageError, Photo, encode, enhance, enhance_files, read_photo


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = mirnet.create_model("paper", channels=8, num_rrg=1, num_mrb=1, num_streams=2)
    # Nudge the final convolution so the output differs visibly from the input.
    with torch.no_grad():
        model.conv_out.weight.add_(0.05)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    mirnet.save_weights(model, path)
    return path


@pytest.fixture(scope="module")
def enhancer(tiny_weights) -> Enhancer:
    return Enhancer(tiny_weights, device="cpu")


def _photo(height=40, width=56, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((height, width, 3)) * 80).astype(np.uint8)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- tiling


def test_tile_covering_the_image_equals_whole_image_inference(enhancer):
    x = torch.rand(1, 3, 45, 61)
    assert torch.equal(enhancer.enhance_tensor(x, tile=None), enhancer.enhance_tensor(x, tile=64))


def test_overlapping_tiles_blend_with_linear_ramps(enhancer, monkeypatch):
    # A stand-in network that answers each tile with its first pixel: tiles start at 0 and 24 of a
    # 56-pixel row (tile 32, overlap 8), so the overlap must ramp linearly from 0 to 24.
    monkeypatch.setattr(enhancer, "_forward", lambda t: torch.full_like(t, t[0, 0, 0, 0].item()))
    x = torch.arange(56.0).expand(1, 3, 32, 56).clone()
    row = enhancer.enhance_tensor(x, tile=32, overlap=8, context_pixels=None)[0, 0, 0]
    expected = torch.cat([torch.zeros(24), 24 * torch.arange(1, 9) / 9, torch.full((24,), 24.0)])
    assert torch.allclose(row, expected, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: the context hooks sit on the bf16 copy
def test_tiles_with_the_global_context_match_the_whole_image(precision):
    # The trained default: its exposure depends on the whole image.
    enhancer = Enhancer(None, device="cpu", precision=precision)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 101, 133) * 0.3
    x[:, :, :, :60] *= 0.2  # a dark and a bright half: a tile alone would see another image
    whole = enhancer.enhance_tensor(x)
    shared = enhancer.enhance_tensor(x, tile=64, overlap=16)  # context pass over the whole image
    alone = enhancer.enhance_tensor(x, tile=64, overlap=16, context_pixels=None)
    assert shared.shape == alone.shape == whole.shape
    shared_error, alone_error = (shared - whole).abs().mean().item(), (alone - whole).abs().mean().item()
    assert shared_error < 0.01 and shared_error < alone_error / 2
    # A downscaled context (as large photos get) still beats none.
    small = enhancer.enhance_tensor(x, tile=64, overlap=16, context_pixels=2000)
    assert (small - whole).abs().mean().item() < alone_error


def test_bf16_enhancer_stores_bf16_weights_in_a_copy_with_the_same_output(tiny_weights):
    model = mirnet.load_model(tiny_weights)
    fast = Enhancer(model, device="cpu", precision="bf16")
    assert next(fast.model.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left in fp32
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x).float().clamp(0, 1)  # autocast casting the fp32 weights on every call
    assert torch.equal(fast.enhance_tensor(x), expected)


def test_tile_must_exceed_twice_the_overlap(enhancer):
    with pytest.raises(ValueError, match="twice the overlap"):
        enhancer.enhance_tensor(torch.rand(1, 3, 80, 80), tile=64, overlap=32)


# ---------------------------------------------------------------- self-ensemble


def test_self_ensemble_averages_the_eight_views_turned_back():
    from mirnet.data import dihedral
    from mirnet.enhance import self_ensemble

    x = torch.rand(1, 3, 6, 9)
    # An equivariant function comes back unchanged: each view is turned back to the original frame.
    assert torch.allclose(self_ensemble(lambda v: 2 * v, x), 2 * x)
    # One that is not (a ramp added along the width): the mean of the 8 views, built with numpy.

    def skewed(v):
        return v + torch.arange(float(v.shape[-1]))

    expected = np.zeros((6, 9, 3))
    image = x[0].permute(1, 2, 0).numpy()
    for k in range(8):
        view = dihedral(image, k)
        view = view + np.arange(float(view.shape[1]))[None, :, None]
        # dihedral(., k) is a flip then a rotation by k quarter turns: undo the rotation, then the flip.
        back = np.rot90(view, -(k % 4))
        expected += back[:, ::-1] if k >= 4 else back
    got = self_ensemble(skewed, x)
    assert np.allclose(got[0].permute(1, 2, 0).numpy(), expected / 8, atol=1e-5)
    assert not torch.allclose(got, skewed(x))  # not the single view


def test_enhancer_self_ensemble_is_the_mean_of_eight_passes(tiny_weights):
    plain = Enhancer(tiny_weights, device="cpu")
    ensemble = Enhancer(tiny_weights, device="cpu", self_ensemble=True)
    x = torch.rand(1, 3, 24, 40)
    views = []
    for k in range(8):
        turned = torch.rot90(x.flip(-1) if k >= 4 else x, k % 4, dims=(-2, -1))
        y = torch.rot90(plain.enhance_tensor(turned), -(k % 4), dims=(-2, -1))
        views.append(y.flip(-1) if k >= 4 else y)
    result = ensemble.enhance_tensor(x)
    assert torch.allclose(result, torch.stack(views).mean(0), atol=1e-6)
    assert not torch.allclose(result, plain.enhance_tensor(x), atol=1e-4)


def test_self_ensemble_tiles_share_each_views_context():
    enhancer = Enhancer(None, device="cpu", self_ensemble=True)  # the trained default, as the tiling test
    torch.manual_seed(0)
    x = torch.rand(1, 3, 101, 133) * 0.3
    x[:, :, :, :60] *= 0.2
    whole = enhancer.enhance_tensor(x)
    tiled = enhancer.enhance_tensor(x, tile=64, overlap=16)
    assert (tiled - whole).abs().mean().item() < 0.01


def test_cli_self_ensemble_writes_the_api_result(tiny_weights, tmp_path):
    source = tmp_path / "dark.png"
    Image.fromarray(_photo(32, 48)).save(source)
    assert main(["enhance", str(source), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                 "--device", "cpu", "--precision", "fp32", "--self-ensemble", "-q"]) == 0  # fmt: skip
    written = np.asarray(Image.open(tmp_path / "out" / "dark.png"))
    expected = Enhancer(tiny_weights, device="cpu", precision="fp32", self_ensemble=True).enhance_rgb(_photo(32, 48))
    assert np.array_equal(written, expected)
    single = Enhancer(tiny_weights, device="cpu", precision="fp32").enhance_rgb(_photo(32, 48))
    assert not np.array_equal(written, single)


def test_sigterm_while_writing_keeps_the_old_output_and_leaves_no_temporary_file(tiny_weights, tmp_path, monkeypatch,
                                                                                   capsys):  # fmt: skip
    source, out = tmp_path / "dark.png", tmp_path / "out"
    Image.fromarray(_photo(32, 48)).save(source)
    out.mkdir()
    (out / "dark.png").write_bytes(b"an earlier output")
    real_fsync = os.fsync

    def terminated_while_syncing(fd):  # the handler runs once this returns, inside atomic_output
        os.kill(os.getpid(), signal.SIGTERM)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", terminated_while_syncing)
    assert main(["enhance", str(source), "-o", str(out), "--weights", str(tiny_weights), "--device", "cpu",
                 "--overwrite", "-q"]) == 128 + signal.SIGTERM  # fmt: skip
    assert capsys.readouterr().err.endswith("mirnet: terminated\n")
    assert [p.name for p in out.iterdir()] == ["dark.png"]
    assert (out / "dark.png").read_bytes() == b"an earlier output"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a library caller's process is left as it was


# ---------------------------------------------------------------- the Python API's types


def test_api_returns_the_kind_it_was_given(tiny_weights, tmp_path):
    rgb = _photo()
    out = enhance(rgb, model=tiny_weights, device="cpu")
    assert out.shape == rgb.shape and out.dtype == np.uint8 and not np.array_equal(out, rgb)
    as_float = enhance(rgb.astype(np.float32) / 255, model=tiny_weights, device="cpu")
    assert as_float.dtype == np.float32 and np.abs(as_float * 255 - out).max() <= 1.0
    gray = enhance(rgb[..., 0], model=tiny_weights, device="cpu")
    assert gray.shape == rgb.shape[:2] and gray.dtype == np.uint8
    # The luma of the enhanced grey-as-RGB image, as Pillow's convert("L"), not one channel of it.
    as_rgb = enhance(np.dstack([rgb[..., 0]] * 3), model=tiny_weights, device="cpu")
    assert np.abs(gray.astype(int) - np.asarray(Image.fromarray(as_rgb).convert("L"))).max() <= 1
    pil = enhance(Image.fromarray(rgb), model=tiny_weights, device="cpu")
    assert isinstance(pil, Image.Image) and pil.size == (rgb.shape[1], rgb.shape[0])
    assert np.array_equal(np.asarray(pil), out)
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    Image.fromarray(rgb).save(tmp_path / "a.png", exif=exif)
    from_path = enhance(tmp_path / "a.png", model=tiny_weights, device="cpu")
    assert np.array_equal(np.asarray(from_path), out)
    carried = Image.Exif()
    carried.load(from_path.info["exif"])
    assert carried[0x010F] == "Camera maker"
    # max_pixels is the decompression-bomb guard of a path's file: below the image's size it refuses.
    with pytest.raises(ImageError, match=r"a.png: more pixels than the 100-pixel limit"):
        enhance(tmp_path / "a.png", model=tiny_weights, device="cpu", max_pixels=100)
    with pytest.raises(ValueError, match="HxWx3"):
        enhance(np.zeros((4, 4, 5), np.uint8), model=tiny_weights)
    with pytest.raises(TypeError):
        enhance(42, model=tiny_weights)


def test_odd_sizes_come_back_exact(enhancer):
    for height, width in [(1, 1), (3, 7), (33, 17)]:
        assert enhancer.enhance_rgb(_photo(height, width)).shape == (height, width, 3)


# ---------------------------------------------------------------- modes, orientation, metadata


def test_exif_orientation_is_applied(enhancer, tmp_path):
    rgb = _photo(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100, subsampling=0)
    photo = read_photo(tmp_path / "rotated.jpg")
    assert photo.rgb.shape == (50, 30, 3)
    assert photo.exif is None and photo.notes == []  # its only tag applied: nothing left, nothing unreadable
    # Turned clockwise, as a viewer shows it (the other way differs by tens of levels).
    assert np.abs(photo.rgb.astype(int) - np.rot90(rgb, -1)).max() <= 4
    summary = enhance_files([tmp_path / "rotated.jpg"], tmp_path / "out", enhancer, progress=False)
    with Image.open(summary.outputs[0]) as out:
        assert out.size == (30, 50)
        assert out.getexif().get(0x0112) in (None, 1)  # not rotated a second time by viewers


def test_truncated_exif_is_noted_once_and_pillow_does_not_warn(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    exif[0x0112] = 6
    Image.fromarray(_photo()).save(tmp_path / "cut.jpg", exif=exif.tobytes()[:20])  # its tags cut short
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        photo = read_photo(tmp_path / "cut.jpg")
    assert [str(w.message) for w in caught] == []  # Pillow's own warning would reach stderr as two raw lines
    assert photo.exif is None and photo.notes == ["unreadable EXIF dropped"]


def test_alpha_is_kept_and_grayscale_stays_grayscale(enhancer, tmp_path):
    rgb = _photo()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rgb[..., 1], "L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    summary = enhance_files([tmp_path / "alpha.png", tmp_path / "gray.png", tmp_path / "palette.png"],
                            tmp_path / "out", enhancer, progress=False)  # fmt: skip
    assert summary.done == 3 and summary.failed == 0
    with Image.open(tmp_path / "out" / "alpha.png") as out:
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out)[..., 3], alpha)
    with Image.open(tmp_path / "out" / "gray.png") as out:
        assert out.mode == "L"
    with Image.open(tmp_path / "out" / "palette.png") as out:
        assert out.mode == "RGB"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_16bit_png_and_cmyk_jpeg_are_read(tmp_path):
    deep = (np.linspace(0, 65535, 20 * 30).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    photo = read_photo(tmp_path / "deep.png")
    assert photo.grayscale and photo.rgb.dtype == np.uint8 and photo.rgb.shape == (20, 30, 3)
    assert photo.rgb[0, 0, 0] == 0 and photo.rgb[-1, -1, 0] == 255  # scaled, not clipped
    # 16-bit grayscale + alpha, which Pillow cannot write and reads as 8-bit RGBA: still grayscale.
    height, width = deep.shape
    gray_alpha = np.dstack([deep, np.full_like(deep, 40000)]).astype(">u2")
    rows = b"".join(b"\x00" + gray_alpha[y].tobytes() for y in range(height))
    (tmp_path / "deep-alpha.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(
        ">IIBBBBB", width, height, 16, 4, 0, 0, 0)) + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))
    photo = read_photo(tmp_path / "deep-alpha.png")
    assert photo.grayscale and photo.rgb[-1, -1, 0] == 255 and photo.alpha[0, 0] == 40000 >> 8
    assert "16-bit input written as 8-bit" in photo.notes and encode(photo, photo.rgb, "PNG")[0].mode == "LA"
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo = read_photo(tmp_path / "cmyk.jpg")
    assert photo.rgb.shape == (40, 56, 3) and photo.icc_profile is None


def test_camera_jpeg_with_a_preview_is_written_as_jpeg_and_conversions_are_reported(enhancer, tmp_path):
    # A JPEG with a second picture, as cameras and phones write them: Pillow reads it as MPO.
    preview = Image.fromarray(_photo()[:20, :28])
    Image.fromarray(_photo()).save(tmp_path / "DSC_0001.JPG", format="MPO", save_all=True, append_images=[preview])
    with Image.open(tmp_path / "DSC_0001.JPG") as camera:
        assert camera.format == "MPO"
    Image.fromarray((np.linspace(0, 65535, 40 * 56).reshape(40, 56)).astype(np.uint16)).save(tmp_path / "deep.png")
    messages = []
    summary = enhance_files([tmp_path / "DSC_0001.JPG", tmp_path / "deep.png"], tmp_path / "out", enhancer,
                            progress=False, report=messages.append)  # fmt: skip
    assert summary.outputs == [tmp_path / "out" / "DSC_0001.jpg", tmp_path / "out" / "deep.png"]
    with Image.open(summary.outputs[0]) as out:
        assert out.format == "JPEG" and out.size == (56, 40)
    assert messages == [f"note: {tmp_path / 'deep.png'}: 16-bit input written as 8-bit"]


def test_icc_profile_is_carried_to_the_output(enhancer, tmp_path):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_photo()).save(tmp_path / "tagged.png", icc_profile=profile)
    Image.fromarray(_photo()).save(tmp_path / "tagged.jpg", icc_profile=profile)
    summary = enhance_files([tmp_path / "tagged.png", tmp_path / "tagged.jpg"], tmp_path / "out", enhancer,
                            progress=False)  # fmt: skip
    assert summary.done == 2
    for output in summary.outputs:
        with Image.open(output) as out:
            assert out.info.get("icc_profile") == profile


def test_format_option_and_suffix(enhancer, tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    summary = enhance_files([tmp_path / "a.png"], tmp_path, enhancer, suffix="_bright", fmt="jpg", progress=False)
    assert summary.outputs == [tmp_path / "a_bright.jpg"]
    with Image.open(tmp_path / "a_bright.jpg") as out:
        assert out.format == "JPEG"


# ---------------------------------------------------------------- folders, globs, safety


def test_folders_globs_and_recursion_keep_the_tree(enhancer, tmp_path):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(_photo()).save(src / "a.png")
    Image.fromarray(_photo()).save(src / "trip" / "b.webp", lossless=True)
    (src / "notes.txt").write_text("not a photo")
    before = _digest(src)
    flat = enhance_files([src], tmp_path / "flat", enhancer, progress=False)
    assert [p.name for p in flat.outputs] == ["a.png"]
    deep = enhance_files([src], tmp_path / "deep", enhancer, recursive=True, progress=False)
    assert sorted(str(p.relative_to(tmp_path / "deep")) for p in deep.outputs) == ["a.png", "trip/b.webp"]
    globbed = enhance_files([str(src / "*.png")], tmp_path / "glob", enhancer, progress=False)
    assert globbed.done == 1
    assert _digest(src) == before


def test_inputs_are_never_overwritten(enhancer, tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    before = _digest(tmp_path)
    summary = enhance_files([tmp_path / "a.png"], tmp_path, enhancer, overwrite=True, progress=False)
    assert summary.failed == 1 and "would overwrite an input" in summary.errors[0]
    # The input named as the output folder: refused before any work, in one line.
    with pytest.raises(ValueError, match=r"a.png: is a file; the output \(-o\) is a folder$"):
        enhance_files([tmp_path / "a.png"], tmp_path / "a.png", enhancer, overwrite=True, progress=False)
    assert _digest(tmp_path) == before


def test_existing_outputs_are_skipped_unless_overwrite(enhancer, tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"keep me")
    summary = enhance_files([tmp_path / "a.png"], tmp_path / "out", enhancer, progress=False)
    assert summary.skipped == 1 and (tmp_path / "out" / "a.png").read_bytes() == b"keep me"
    summary = enhance_files([tmp_path / "a.png"], tmp_path / "out", enhancer, overwrite=True, progress=False)
    assert summary.done == 1
    with Image.open(tmp_path / "out" / "a.png") as out:
        assert out.size == (56, 40)


def test_a_failed_write_keeps_the_old_output_and_the_batch_goes_on(enhancer, tmp_path, monkeypatch):
    for name in ("a", "b"):
        Image.fromarray(_photo()).save(tmp_path / f"{name}.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"keep me")
    save = Image.Image.save

    def disk_full_on_a(image, fp, *args, **kwargs):  # half an image written, then the disk fills up
        if Path(fp).name.startswith(".a.png."):
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(28, "No space left on device")
        return save(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_on_a)
    inputs = [tmp_path / "a.png", tmp_path / "b.png"]
    summary = enhance_files(inputs, tmp_path / "out", enhancer, overwrite=True, progress=False)
    assert summary.failed == 1 and summary.done == 1
    assert summary.errors == [f"{tmp_path / 'out' / 'a.png'}: cannot write (No space left on device)"]
    assert (tmp_path / "out" / "a.png").read_bytes() == b"keep me"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]  # no temporary file


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    good = io.BytesIO()
    Image.fromarray(_photo()).save(good, format="PNG")
    cases = {
        "truncated": (folder / "truncated.png", good.getvalue()[: len(good.getvalue()) // 2]),
        "corrupt": (folder / "corrupt.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4),
        "not an image": (folder / "notes.png", b"just some text, not pixels\n"),
        "empty": (folder / "empty.png", b""),
    }
    for path, data in cases.values():
        path.write_bytes(data)
    paths = {name: path for name, (path, _) in cases.items()}
    paths["missing"] = folder / "missing.png"
    (folder / "no-images").mkdir()
    paths["no images"] = folder / "no-images"
    Image.new("L", (1500, 1000)).save(folder / "bomb.png")  # 1.5 MP: a "bomb" under a 1 MP limit
    paths["bomb"] = folder / "bomb.png"
    return paths


def test_every_bad_input_is_one_line_and_the_batch_goes_on(tiny_weights, tmp_path, capsys):
    bad = _bad_inputs(tmp_path / "in")
    Image.fromarray(_photo()).save(tmp_path / "in" / "good.png")
    before = _digest(tmp_path / "in")
    inputs = [str(p) for p in bad.values()] + [str(tmp_path / "in" / "good.png")]
    status = main(["enhance", *inputs, "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                   "--device", "cpu", "--max-pixels", "1000000", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad)
    # A JPEG header over noise: Pillow may reject it on opening or while decoding, either is right.
    expected = {"truncated": ("corrupt or truncated",), "corrupt": ("corrupt or truncated", "not an image"),
                "not an image": ("not an image",), "empty": ("empty file",), "missing": ("no such file",),
                "no images": ("no images in this folder",), "bomb": ("decompression bombs",)}  # fmt: skip
    for name, path in bad.items():
        line = next((e for e in errors if str(path) in e), None)
        assert line is not None, f"no error line for the {name} case"
        assert any(text in line for text in expected[name]) and line.count(str(path)) == 1, line
    assert "1 done, 0 skipped, 7 failed" in err
    assert (tmp_path / "out" / "good.png").exists()
    assert _digest(tmp_path / "in") == before
    assert not list((tmp_path / "out").glob(".*.part"))  # nothing half-written left behind
    # The flag raises the limit: the big image now goes through.
    assert main(["enhance", str(bad["bomb"]), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                 "--device", "cpu", "--max-pixels", "2000000", "--tile", "512", "-q"]) == 0  # fmt: skip
    with Image.open(tmp_path / "out" / "bomb.png") as out:
        assert out.size == (1500, 1000)


@pytest.mark.parametrize("error", [KeyError((3, 16)), NotImplementedError("Unimplemented pixel format")])
def test_an_image_a_pillow_plugin_fails_on_is_one_line(tiny_weights, tmp_path, capsys, monkeypatch, error):
    # Pillow's plugins raise what they will: a 16-bit PSD a KeyError, an unknown DDS NotImplementedError.
    module = sys.modules["mirnet.enhance"]  # the module: mirnet.enhance is the function it exports

    for name in ("odd.png", "good.png"):
        Image.fromarray(_photo()).save(tmp_path / name)
    decode = module.decode

    def plugin(image):
        if Path(image.filename).name == "odd.png":
            raise error
        return decode(image)

    monkeypatch.setattr(module, "decode", plugin)
    with pytest.raises(ImageError, match=rf"odd.png: cannot read this image \({type(error).__name__}: .+\)$"):
        read_photo(tmp_path / "odd.png")
    inputs = [str(tmp_path / "odd.png"), str(tmp_path / "good.png")]
    status = main(["enhance", *inputs, "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                   "--device", "cpu", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and "1 done, 0 skipped, 1 failed" in err
    assert f"error: {tmp_path / 'odd.png'}: cannot read this image" in err


def test_an_input_in_a_folder_that_cannot_be_searched_is_one_line(tiny_weights, tmp_path, capsys,
                                                                   monkeypatch):  # fmt: skip
    # Path.exists and is_dir raise PermissionError there (chmod would not stop root, whom tests may run as).
    Image.fromarray(_photo()).save(tmp_path / "good.png")
    locked = tmp_path / "locked" / "x.jpg"
    exists, is_dir = Path.exists, Path.is_dir

    def guarded(check):
        def probe(path, *args, **kwargs):
            if "locked" in path.parts:
                raise PermissionError(13, "Permission denied", str(path))
            return check(path, *args, **kwargs)

        return probe

    monkeypatch.setattr(Path, "exists", guarded(exists))
    monkeypatch.setattr(Path, "is_dir", guarded(is_dir))
    status = main(["enhance", str(locked), str(tmp_path / "good.png"), "-o", str(tmp_path / "out"),
                   "--weights", str(tiny_weights), "--device", "cpu", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and "1 done, 0 skipped, 1 failed" in err
    assert f"error: {locked}: permission denied" in err


def test_a_pipe_or_device_is_refused_without_reading_it(tiny_weights, tmp_path, capsys):
    # Reading either would never end (a pipe with no writer blocks; /dev/zero has no end).
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    for path in (pipe, Path("/dev/zero")):
        with pytest.raises(ImageError, match=r": not a regular file \(a device, pipe or socket\)$"):
            read_photo(path)
    status = main(["enhance", str(pipe), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                   "--device", "cpu", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and f"error: {pipe}: not a regular file" in err and "Traceback" not in err


def test_unwritable_output_folder_is_one_line(tiny_weights, tmp_path, capsys):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    (tmp_path / "blocked").write_text("a file where the output folder should be")
    status = main(["enhance", str(tmp_path / "a.png"), "-o", str(tmp_path / "blocked" / "out"),
                   "--weights", str(tiny_weights), "--device", "cpu", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert any(line.startswith("error: ") and "output folder" in line for line in err.splitlines())


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    assert main(["enhance", str(tmp_path / "a.png"), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-model" in err


# ---------------------------------------------------------------- models and demo


def test_models_lists_bundled_and_installed(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIRNET_HOME", str(tmp_path))
    (tmp_path / "mine.safetensors").write_bytes(tiny_weights.read_bytes())
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "[installed]" in out
    for name in mirnet.zoo.BUNDLED:
        assert name in out
    assert mirnet.load_model("mine").config.channels == 8


def test_an_installed_model_is_found_whatever_the_case_of_its_suffix(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIRNET_HOME", str(tmp_path))
    (tmp_path / "Upper.SAFETENSORS").write_bytes(tiny_weights.read_bytes())
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["models", "--json"]) == 0
    installed = [m["name"] for m in json.loads(capsys.readouterr().out) if m["kind"] == "installed"]
    assert installed == ["Upper"]
    assert mirnet.load_model("Upper").config.channels == 8


def test_models_lists_the_others_when_one_installed_file_has_an_odd_record(tiny_weights, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("MIRNET_HOME", str(tmp_path))
    (tmp_path / "mine.safetensors").write_bytes(tiny_weights.read_bytes())
    tensors = load_file(tiny_weights)
    record = mirnet.weights.read_metadata(tiny_weights)
    partial = {k: v for k, v in record["config"].items() if k != "num_mrb"}
    odd = {"a-string": {"config": "x"}, "b-training": {**record, "training": "x"},
           "c-metrics": {**record, "metrics": {"eval15": 21.0}}, "d-partial": {**record, "config": partial}}
    for name, header in odd.items():
        save_file(tensors, str(tmp_path / f"{name}.safetensors"), metadata={"mirnet": json.dumps(header)})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    listing = out.split("\n")
    for name in ("a-string", "b-training", "c-metrics"):
        line = next(i for i, text in enumerate(listing) if text.startswith(f"{name}  [installed]"))
        assert listing[line + 1].startswith("    unusable: ") and "cannot be read" in listing[line + 1]
    assert "d-partial  [installed]" in out and "mine  [installed]" in out  # described with the default num_mrb
    assert main(["models", "--json"]) == 0
    assert {entry["name"] for entry in json.loads(capsys.readouterr().out)} >= set(odd) | {"mine"}


def test_demo_replaces_its_own_picture_and_nothing_else_unasked(tiny_weights, tmp_path, capsys):
    from mirnet.demo import written_by_demo

    demo = tmp_path / "demo.png"
    for _ in range(2):  # a second run replaces the first one's picture
        assert main(["demo", "-o", str(demo), "--weights", str(tiny_weights)]) == 0
        assert written_by_demo(demo)
    mine = tmp_path / "mine.png"  # a picture of one's own: a PNG without the demo's mark
    Image.fromarray(np.full((12, 16, 3), 30, np.uint8)).save(mine)
    before = mine.read_bytes()
    (tmp_path / "folder.png").mkdir()
    for name, problem in ((mine, "already exists and is not a demo picture"), (tmp_path / "demo.jpg", "ending in .png"),
                          (tmp_path, "ending in .png"), (tmp_path / "folder.png", "is a folder")):  # fmt: skip
        assert main(["demo", "-o", str(name), "--weights", str(tiny_weights)]) == 2
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1
    assert mine.read_bytes() == before and not (tmp_path / "demo.jpg").exists()
    assert main(["demo", "-o", str(mine), "--weights", str(tiny_weights), "--overwrite"]) == 0
    assert written_by_demo(mine)
    # The sample's picture from before the mark (an unmarked 1800x425 PNG) is the demo's own too.
    earlier, black = tmp_path / "earlier.png", tmp_path / "black.png"
    Image.new("RGB", (1800, 425), (255, 255, 255)).save(earlier)
    Image.new("RGB", (1800, 425)).save(black)  # the size alone: someone else's picture
    assert written_by_demo(earlier) and not written_by_demo(black) and not written_by_demo(tmp_path / "absent.png")
    assert main(["demo", "-o", str(earlier), "--weights", str(tiny_weights)]) == 0


def test_demo_writes_a_side_by_side_picture(tiny_weights, tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo.png"), "--weights", str(tiny_weights)]) == 0
    with Image.open(tmp_path / "demo.png") as image:
        assert image.width == 3 * 600 and image.height > 400
        picture = np.asarray(image.convert("RGB"))
    assert str(tmp_path / "demo.png") in capsys.readouterr().out
    from mirnet.demo import sample_scene

    # The middle panel is the model's output on the sample (below the panel titles).
    enhanced = Enhancer(tiny_weights).enhance_rgb(sample_scene()[0])
    assert np.array_equal(picture[-400:, 600:1200], enhanced)


# ---------------------------------------------------------------- unusual inputs and collisions


def test_two_inputs_with_one_output_name_do_not_overwrite_each_other(enhancer, tmp_path):
    for day, level in (("day1", 40), ("day2", 90)):
        (tmp_path / day).mkdir()
        Image.fromarray(np.full((24, 32, 3), level, np.uint8)).save(tmp_path / day / "IMG_1.png")
    Image.fromarray(_photo()).save(tmp_path / "day1" / "x.jpg")
    Image.fromarray(_photo(seed=1)).save(tmp_path / "day1" / "x.jpeg")
    inputs = [tmp_path / "day1" / "IMG_1.png", tmp_path / "day2" / "IMG_1.png", tmp_path / "day1" / "x.jpg",
              tmp_path / "day1" / "x.jpeg"]  # fmt: skip
    for overwrite in (False, True):
        out = tmp_path / f"out-{overwrite}"
        summary = enhance_files(inputs, out, enhancer, overwrite=overwrite, progress=False)
        assert summary.done == 2 and summary.failed == 2 and summary.skipped == 0
        assert f"{tmp_path / 'day2' / 'IMG_1.png'}: its output {out / 'IMG_1.png'}" in summary.errors[0]
        assert str(tmp_path / "day1" / "x.jpeg") in summary.errors[1]
        # The first input's result is the one kept: the dark grey one, not the lighter second.
        expected = enhancer.enhance_rgb(np.full((24, 32, 3), 40, np.uint8))
        with Image.open(out / "IMG_1.png") as kept:
            assert np.array_equal(np.asarray(kept.convert("RGB")), expected)


def test_an_output_of_this_batch_reached_by_another_name_is_not_replaced(enhancer, tmp_path, monkeypatch):
    """On a case-insensitive disk day2/img_1.png's output img_1.png is day1/IMG_1.png's IMG_1.png: emulated
    here by making the second name a hard link to the first output, as such a disk shows it."""
    module = sys.modules["mirnet.enhance"]  # the module: mirnet.enhance is the function it exports

    for day, name, level in (("day1", "IMG_1.png", 40), ("day2", "img_1.png", 90)):
        (tmp_path / day).mkdir()
        Image.fromarray(np.full((24, 32, 3), level, np.uint8)).save(tmp_path / day / name)
    output_path = module.output_path

    def case_insensitive(*args):
        target = output_path(*args)
        if target.parent.is_dir() and not target.exists():
            twin = [p for p in target.parent.iterdir() if p.name.lower() == target.name.lower()]
            if twin:
                target.hardlink_to(twin[0])
        return target

    monkeypatch.setattr(module, "output_path", case_insensitive)
    inputs = [tmp_path / "day1" / "IMG_1.png", tmp_path / "day2" / "img_1.png"]
    expected = enhancer.enhance_rgb(np.full((24, 32, 3), 40, np.uint8))
    for overwrite in (False, True):
        out = tmp_path / f"out-{overwrite}"
        summary = enhance_files(inputs, out, enhancer, overwrite=overwrite, progress=False)
        assert (summary.done, summary.skipped, summary.failed) == (1, 0, 1)
        message = f"{inputs[1]}: its output {out / 'img_1.png'} is {inputs[0]}'s in this batch"
        assert message in summary.errors[0]
        with Image.open(out / "IMG_1.png") as kept:  # the first input's result, not replaced by the second's
            assert np.array_equal(np.asarray(kept.convert("RGB")), expected)


def test_an_input_reached_by_another_name_is_not_overwritten(enhancer, tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").hardlink_to(tmp_path / "a.png")  # as IMG.JPG is IMG.jpg on macOS
    before = _digest(tmp_path)
    summary = enhance_files([tmp_path / "a.png"], tmp_path / "out", enhancer, overwrite=True, progress=False)
    assert summary.failed == 1 and "would overwrite an input" in summary.errors[0]
    assert _digest(tmp_path) == before


def test_a_gray_profile_is_kept_on_gray_outputs_but_not_on_webp_which_stores_them_as_rgb():
    gray = np.full((8, 8, 3), 60, np.uint8)
    for fmt, kept in (("PNG", True), ("TIFF", True), ("JPEG", True), ("WEBP", False)):
        photo = Photo(gray, grayscale=True, icc_profile=b"a gray profile", format="PNG")
        image, options = encode(photo, gray, fmt)
        assert image.mode == "L" and ("icc_profile" in options) == kept, fmt
        assert photo.notes == ([] if kept else ["GRAY ICC profile dropped (WebP stores gray pixels as RGB)"])
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", **options)
    with Image.open(buffer) as written:  # Pillow writes it as RGB
        assert written.mode == "RGB" and "icc_profile" not in written.info


def test_cmyk_with_an_unusable_profile_exif_of_the_wrong_type_and_float_tiffs_are_read(tmp_path):
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "bad-profile.jpg", icc_profile=b"not a profile")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()  # an RGB profile on CMYK
    Image.fromarray(_photo()).convert("CMYK").save(tmp_path / "rgb-profile.jpg", icc_profile=srgb)
    for name in ("bad-profile.jpg", "rgb-profile.jpg"):
        photo = read_photo(tmp_path / name)
        assert photo.rgb.shape == (40, 56, 3) and "unusable CMYK profile ignored" in photo.notes
    # An orientation tag (0x0112) stored as text: Pillow cannot write such EXIF back.
    header = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08" + (1).to_bytes(2, "big")
    entry = (0x0112).to_bytes(2, "big") + (2).to_bytes(2, "big") + (4).to_bytes(4, "big") + b"abc\x00"
    Image.fromarray(_photo()).save(tmp_path / "odd-exif.jpg", exif=header + entry + bytes(4))
    photo = read_photo(tmp_path / "odd-exif.jpg")
    assert photo.rgb.shape == (40, 56, 3) and photo.exif is None and photo.notes
    unit = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    Image.fromarray(unit, "F").save(tmp_path / "float.tif")
    photo = read_photo(tmp_path / "float.tif")
    assert photo.grayscale and photo.rgb[0, 0, 0] == 0 and photo.rgb[-1, -1, 0] == 255
    assert "32-bit float input read as [0, 1], written as 8-bit" in photo.notes
    overshoot = np.linspace(0, 1, 100 * 100, dtype=np.float32).reshape(100, 100)
    overshoot[:2] = 1.5  # a render with 2% of highlights above 1: still [0, 1], clipped
    Image.fromarray(overshoot, "F").save(tmp_path / "overshoot.tif")
    photo = read_photo(tmp_path / "overshoot.tif")
    assert photo.rgb[0, 0, 0] == 255 and photo.rgb[50, 50, 0] == round(overshoot[50, 50] * 255)
    stars = np.full((100, 100), 0.8, np.float32)
    stars[0, :10] = 250  # a dark 0-255 frame with a few bright stars: 0-255, not a grey [0, 1] sky
    Image.fromarray(stars, "F").save(tmp_path / "stars.tif")
    photo = read_photo(tmp_path / "stars.tif")
    assert photo.rgb[50, 50, 0] == 1 and photo.rgb[0, 0, 0] == 250
    Image.fromarray(unit * 200, "F").save(tmp_path / "float255.tif")
    photo = read_photo(tmp_path / "float255.tif")
    assert photo.rgb[-1, -1, 0] == 200 and "32-bit float input read as 0-255, written as 8-bit" in photo.notes


def test_webp_too_large_and_out_of_memory_are_one_line_and_the_batch_goes_on(enhancer, tmp_path):
    Image.fromarray(np.zeros((2, 16400, 3), np.uint8)).save(tmp_path / "pano.png")
    Image.fromarray(_photo()).save(tmp_path / "small.png")
    summary = enhance_files([tmp_path / "pano.png", tmp_path / "small.png"], tmp_path / "out", enhancer,
                            fmt="webp", progress=False)  # fmt: skip
    assert summary.done == 1 and summary.failed == 1
    assert "too large for WebP" in summary.errors[0] and str(tmp_path / "pano.png") in summary.errors[0]
    Image.fromarray(np.zeros((1, 65536), np.uint8)).save(tmp_path / "line.png")  # one pixel past JPEG's sides
    summary = enhance_files([tmp_path / "line.png"], tmp_path / "out", enhancer, fmt="jpg", progress=False)
    assert summary.failed == 1 and "1 is too large for JPEG (at most 65535 pixels a side)" in summary.errors[0]

    class Exhausted(Enhancer):
        def __init__(self):  # no model: it only runs out of memory
            pass

        def enhance_rgb(self, rgb, tile="auto", overlap=32):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    summary = enhance_files([tmp_path / "small.png"], tmp_path / "out2", Exhausted(), progress=False)
    assert summary.failed == 1 and f"{tmp_path / 'small.png'}: out of memory" in summary.errors[0]


def test_bad_tile_and_overlap_fail_before_any_work(tiny_weights, tmp_path, capsys):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    for options, message in ((["--overlap", "-8"], "overlap must be 0 or more pixels, got -8"),
                             (["--tile", "64"], "must be more than twice the overlap")):  # fmt: skip
        status = main(["enhance", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--weights",
                       str(tiny_weights), "--device", "cpu", "-q", *options])  # fmt: skip
        err = capsys.readouterr().err
        assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert message in err
        assert not (tmp_path / "out").exists()


def test_arrays_with_negative_strides_and_a_callers_model_left_as_it_was(tiny_weights):
    bgr = _photo()
    model = mirnet.load_model(tiny_weights).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    via_view = enhance(bgr[..., ::-1], model=model, device="cpu")
    assert np.array_equal(via_view, enhance(np.ascontiguousarray(bgr[..., ::-1]), model=model, device="cpu"))
    assert model.training and model.conv_in.weight.is_contiguous()  # not switched to eval or channels_last
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_an_installed_copy_of_a_shipped_model_is_listed_by_the_name_it_loads_by(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIRNET_HOME", str(tmp_path))
    shipped = mirnet.zoo.bundled_path("lol-compact")
    (tmp_path / "lol-compact-v3.safetensors").write_bytes(shipped.read_bytes())  # it records name lol-compact
    assert main(["models", "--json"]) == 0
    installed = [m for m in json.loads(capsys.readouterr().out) if m["kind"] == "installed"]
    assert [m["name"] for m in installed] == ["lol-compact-v3"]


def test_export_refuses_to_overwrite_its_input_weights(tiny_weights, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(tiny_weights.read_bytes())
    assert main(["export", "onnx", "--weights", str(weights), "-o", str(weights)]) == 2
    assert "refusing to overwrite the input weights" in capsys.readouterr().err
    assert weights.read_bytes() == tiny_weights.read_bytes()


def test_enhance_takes_an_enhancer_loaded_once(enhancer):
    rgb = _photo()
    assert np.array_equal(enhance(rgb, model=enhancer), enhancer.enhance_rgb(rgb))


def test_a_size_found_only_while_decoding_is_still_held_to_the_pixel_limit(tmp_path, monkeypatch):
    # ICNS and BLP files learn their real size while decoding; Pillow then warns as it does at open.
    from PIL import PngImagePlugin

    Image.fromarray(_photo()).save(tmp_path / "frame.png")
    load = PngImagePlugin.PngImageFile.load

    def load_warning_of_a_bomb(self):
        warnings.warn("decoded frame larger than declared", Image.DecompressionBombWarning)
        return load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", load_warning_of_a_bomb)
    with pytest.raises(ImageError, match=r"frame\.png: more pixels than the 1,000,000-pixel limit"):
        read_photo(tmp_path / "frame.png", max_pixels=1_000_000)


def test_globs_that_match_nothing_and_hidden_files(tiny_weights, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "in" / "a.png")
    Image.fromarray(_photo()).save(tmp_path / "in" / ".thumbnail.png")  # e.g. left by a file manager
    pattern = str(tmp_path / "nowhere" / "*.jpg")
    status = main(["enhance", str(tmp_path / "in"), pattern, "-o", str(tmp_path / "out"), "--weights",
                   str(tiny_weights), "--device", "cpu", "-q"])  # fmt: skip
    assert status == 1
    assert f"error: {pattern}: no file matches this pattern" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_arrays_of_other_types_are_refused_and_floats_clipped(enhancer):
    with pytest.raises(ValueError, match="expected uint8 or float pixels, got uint16"):
        enhance(_photo().astype(np.uint16), model=enhancer)
    wide = _photo().astype(np.float32) / 40 - 0.5  # values from -0.5 to about 1.5: clipped at both ends
    assert np.array_equal(enhance(wide, model=enhancer), enhance(np.clip(wide, 0, 1), model=enhancer))


def test_bench_enhance_times_the_model_it_is_given_in_the_defaults_place(tiny_weights, tmp_path):
    out = tmp_path / "bench.json"
    result = run_script("bench_enhance.py", "--models", "default", "--sizes", "48x64", "--repeat", "1",
                        "--precision", "fp32", "--model", tiny_weights, "--json", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"default: {tiny_weights};" in result.stdout
    (run,) = json.loads(out.read_text())["runs"]
    assert run["model"] == "default" and (run["height"], run["width"]) == (48, 64)
    assert run["parameters"] == sum(p.numel() for p in mirnet.load_weights(tiny_weights).parameters())
    missing = run_script("bench_enhance.py", "--models", "default", "--sizes", "48x64", "--model", tmp_path / "no.safetensors")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"bench_enhance.py: error: --model: {tmp_path / 'no.safetensors'}: no such file"


def test_a_second_run_into_a_folder_inside_the_inputs_does_not_enhance_its_outputs(enhancer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    first = enhance_files(["."], "enhanced", enhancer, recursive=True, progress=False)
    assert first.done == 1 and first.outputs == [Path("enhanced/a.png")]
    again = enhance_files(["."], "enhanced", enhancer, recursive=True, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 1, 0)
    assert not (tmp_path / "enhanced" / "enhanced").exists()
    # An output folder that holds the inputs' folder is not searched around: its photos stay inputs.
    Image.fromarray(_photo()).save(tmp_path / "enhanced" / "b.png")
    assert enhance_files(["enhanced"], ".", enhancer, progress=False).done == 1


def test_each_file_is_enhanced_once_however_it_is_named(enhancer, tmp_path):
    (tmp_path / "d").mkdir()
    Image.fromarray(_photo()).save(tmp_path / "d" / "p.png")
    summary = enhance_files([tmp_path / "d", tmp_path / "d" / "p.png", tmp_path / "d" / ".." / "d" / "p.png"],
                            tmp_path / "out", enhancer, progress=False)  # fmt: skip
    assert (summary.done, summary.failed) == (1, 0)
    # One path as a string is one path, not its characters.
    single = enhance_files(str(tmp_path / "d" / "p.png"), tmp_path / "one", enhancer, progress=False)
    assert (single.done, single.failed) == (1, 0)


def test_a_quoted_glob_of_folders_searches_them_and_hidden_folders_are_left_out(enhancer, tmp_path):
    for folder in ("shots1", "shots2", "shots1/.thumbnails"):
        (tmp_path / folder).mkdir()
        Image.fromarray(_photo()).save(tmp_path / folder / "x.png")
    summary = enhance_files([str(tmp_path / "shots*")], tmp_path / "out", enhancer, recursive=True, progress=False)
    assert summary.done == 1 and summary.failed == 1  # both are x.png: the second is refused, not overwritten
    assert "is " in summary.errors[0] and "in this batch" in summary.errors[0]
    hidden = enhance_files([tmp_path / "shots1"], tmp_path / "out1", enhancer, recursive=True, progress=False)
    assert [p.name for p in hidden.outputs] == ["x.png"]  # .thumbnails/x.png is not an input
    (tmp_path / "scans").mkdir()  # PostScript is not searched for: Ghostscript would run it
    (tmp_path / "scans" / "page.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n")
    Image.fromarray(_photo()).save(tmp_path / "scans" / "a.png")
    scans = enhance_files([tmp_path / "scans"], tmp_path / "out-scans", enhancer, progress=False)
    assert [p.name for p in scans.outputs] == ["a.png"] and scans.failed == 0
    # `shots1/*` run twice: its own output folder, and a folder without images, are not inputs.
    (tmp_path / "shots1" / "raw").mkdir()
    for _ in range(2):
        again = enhance_files([str(tmp_path / "shots1" / "*")], tmp_path / "shots1" / "enhanced", enhancer,
                              progress=False)  # fmt: skip
        assert again.failed == 0 and again.done + again.skipped == 1, again.errors
    # A pattern inside the output folder names its files on purpose: they are enhanced again.
    outputs = tmp_path / "shots1" / "enhanced"
    twice = enhance_files([str(outputs / "*.png")], outputs, enhancer, suffix="_2", progress=False)
    assert twice.done == 1 and twice.failed == 0 and (outputs / "x_2.png").exists(), twice.errors


def test_what_an_output_cannot_hold_is_dropped_with_a_note(enhancer, tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "x" * 70_000  # ImageDescription: more than a JPEG's EXIF segment holds
    Image.fromarray(_photo()).save(tmp_path / "big.png", exif=exif.tobytes())
    rgba = np.dstack([_photo(), np.full((40, 56), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    notes = []
    summary = enhance_files([tmp_path / "big.png", tmp_path / "clear.png"], tmp_path / "out", enhancer, fmt="jpg",
                            progress=False, report=notes.append)  # fmt: skip
    assert summary.done == 2, summary.errors
    assert any("big.png: EXIF of" in n and "dropped" in n for n in notes)
    assert any("clear.png: transparency dropped (JPEG has none)" in n for n in notes)
    frames = [Image.fromarray(_photo(seed=s)) for s in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert "the first of its 3 frames enhanced" in read_photo(tmp_path / "anim.gif").notes


def test_an_rgb_colour_key_stays_transparent_and_a_lab_profile_is_not_put_on_rgb(tmp_path):
    rgb = _photo()
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "key.png", transparency=(1, 2, 3))
    photo = read_photo(tmp_path / "key.png")
    assert photo.alpha is not None and photo.alpha[0, 0] == 0 and photo.alpha[1, 1] == 255
    gray = _photo()[..., 0]
    gray[0, 0] = 5
    Image.fromarray(gray).save(tmp_path / "graykey.png", transparency=5)
    photo = read_photo(tmp_path / "graykey.png")
    assert photo.grayscale and photo.alpha[0, 0] == 0 and photo.alpha[1, 1] == 255
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    for name in ("lab.png", "lab.tif"):  # a TIFF's tags do not bring the profile back either
        Image.fromarray(_photo()).save(tmp_path / name, icc_profile=lab)
        photo = read_photo(tmp_path / name)
        assert photo.icc_profile is None and any("ICC profile dropped" in n for n in photo.notes)
        if photo.exif:
            record = Image.Exif()
            record.load(photo.exif)
            assert 34675 not in record  # InterColorProfile


def test_bad_api_arguments_are_clear_errors_before_any_work(enhancer, tmp_path):
    image = _photo()
    for tile, message in (("512", "tile must be a size in pixels"), (True, "tile must be a size in pixels"),
                          (1, "tile must be at least 16 pixels")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            enhance(image, model=enhancer, tile=tile)
    assert np.array_equal(enhance(image, model=enhancer, tile=np.int64(64), overlap=np.int32(8)),
                          enhance(image, model=enhancer, tile=64, overlap=8))  # fmt: skip
    with pytest.raises(ValueError, match=r"an empty image \(0x5 pixels\)"):
        enhance(np.zeros((5, 0, 3), np.uint8), model=enhancer)
    nan = image.astype(np.float32) / 255
    nan[3, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        enhance(nan, model=enhancer)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Enhancer(enhancer.model, device="tpu")
    Image.fromarray(image).save(tmp_path / "a.png")
    for kwargs, message in (({"fmt": "tif"}, "unknown output format 'tif'"),
                            ({"suffix": "/../../escaped"}, "a path separator"),
                            ({"max_pixels": 0}, "max_pixels must be at least 1")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            enhance_files([tmp_path / "a.png"], tmp_path / "out", enhancer, progress=False, **kwargs)
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escaped.png").exists()


def test_jpegs_missing_their_data_are_refused_and_padded_ones_read(tmp_path):
    from mirnet.data import DataError, read_rgb

    buffer = io.BytesIO()
    Image.fromarray(_photo(192, 256)).save(buffer, "JPEG", quality=90)  # about 28 KB
    whole = buffer.getvalue()
    (tmp_path / "padded.jpg").write_bytes(whole + bytes(8192))  # zeros after the end marker: a whole image
    assert read_photo(tmp_path / "padded.jpg").rgb.shape == (192, 256, 3)
    # An interrupted copy: the file's size, but zeros from the middle of its image data on.
    (tmp_path / "copy.jpg").write_bytes(whole[: len(whole) // 2] + bytes(len(whole) - len(whole) // 2))
    # A header that declares 9000x9000 pixels over a few KB (Pillow would decode 81 MP of grey).
    sof = whole.index(b"\xff\xc0")
    big = bytearray(whole)
    big[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") * 2
    (tmp_path / "big.jpg").write_bytes(bytes(big))
    for name, reason in (("copy.jpg", "bytes are zeros, an interrupted copy?"),
                         ("big.jpg", "bytes of image data cannot hold 9000x9000 pixels")):  # fmt: skip
        with pytest.raises(ImageError, match=f"{name}: corrupt or truncated image \\(.*{reason.replace('?', '.')}"):
            read_photo(tmp_path / name)
        with pytest.raises(DataError, match=f"{name}: corrupt or truncated image \\(.*{reason.replace('?', '.')}"):
            read_rgb(tmp_path / name)  # the reader of training and evaluation pairs refuses them too
    assert read_rgb(tmp_path / "padded.jpg").shape == (192, 256, 3)
    # Cut short with its end marker put back: it decodes, grey where the data ended, and says so.
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 6 // 10] + b"\xff\xd9")
    photo = read_photo(tmp_path / "cut.jpg")
    rows = int((photo.rgb == 128).all(axis=(1, 2)).sum())
    assert rows >= 8 and photo.notes == [f"its last {rows} rows are flat grey (128), as a JPEG whose data ended "
                                         "early decodes: the file may be cut short"]  # fmt: skip
    assert read_photo(tmp_path / "padded.jpg").notes == []  # a whole photo says nothing
    banded = _photo(192, 256)
    banded[-16:] = 128  # a PNG's grey band is only a band
    Image.fromarray(banded).save(tmp_path / "band.png")
    assert read_photo(tmp_path / "band.png").notes == []


def test_a_file_name_with_a_newline_is_still_one_line(enhancer, tmp_path):
    (tmp_path / "bad\nname.jpg").write_bytes(b"not an image")
    lines = []
    summary = enhance_files([tmp_path / "bad\nname.jpg"], tmp_path / "out", enhancer, progress=False,
                            report=lines.append)  # fmt: skip
    assert summary.failed == 1 and len(lines) == 1 and "\n" not in lines[0] and "bad\\nname.jpg" in lines[0]


def test_a_tiffs_descriptive_tags_are_carried_and_its_layout_tags_are_not(enhancer, tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Maker", "Camera 1"  # Make, Model
    Image.fromarray(_photo()).save(tmp_path / "shot.tif", exif=exif)
    summary = enhance_files([tmp_path / "shot.tif"], tmp_path / "out", enhancer, progress=False)
    png = enhance_files([tmp_path / "shot.tif"], tmp_path / "png", enhancer, fmt="png", progress=False)
    assert summary.done == png.done == 1
    for output in (*summary.outputs, *png.outputs):
        with Image.open(output) as out:
            tags = out.getexif()
            assert (tags.get(0x010F), tags.get(0x0110)) == ("Maker", "Camera 1")
            assert out.size == (56, 40)
    record = Image.Exif()
    record.load(read_photo(tmp_path / "shot.tif").exif)
    assert 273 not in record and 256 not in record  # StripOffsets, ImageWidth: the input file's own
