"""Enhance photos: decode what Pillow reads, run the model (tile by tile when large), write back safely.

The photo's look is kept apart from its pixels: EXIF orientation is applied before the model sees
it, the alpha channel goes around the model and is put back, the ICC profile and the EXIF record
are carried to the output, and grayscale stays grayscale.
"""

from __future__ import annotations

import functools
import glob
import io
import itertools
import numbers
import os
import stat
import struct
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .data import GREY_TAIL_ROWS, eight_bit, grey_tail, jpeg_damage
from .errors import first_line, out_of_memory
from .files import atomic_output
from .model import GlobalPool, MIRNet
from .runtime import Runtime, select_runtime

DEFAULT_OVERLAP = 32
# Above this many pixels the image is cut into tiles, which bounds memory for any photo.
AUTO_TILE_PIXELS = 1024 * 1024
AUTO_TILE = 512
# Tiles share one global context (the pooled values of a pass over the whole image, downscaled to
# at most this many pixels): without it each tile picks its own exposure, and seams show.
CONTEXT_PIXELS = 1024 * 1024
PIL_LIMIT = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb guard (about 89.5 MP)
WEBP_MAX_SIDE = 16383  # the WebP format's limit on width and height
JPEG_MAX_SIDE = 65535  # the JPEG format's (its frame header holds 16-bit sizes)
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
MIN_TILE = 16  # the API's floor (a 1-pixel tile would take a pass per pixel); the CLI asks for 64
JPEG_MAX_EXIF = 65_533  # an APP1 segment's payload: the record with its "Exif\0\0" header, as Pillow checks it
_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


class InferenceError(RuntimeError):
    """The model's runtime failed on one image; a batch reports it and goes on."""


class ImageError(ValueError):
    """An image that cannot be read or written; the message names the file and the problem."""


# ---------------------------------------------------------------- decoding and encoding


@dataclass
class Photo:
    """A decoded photo: RGB pixels for the model, plus what must survive around it."""

    rgb: np.ndarray  # HxWx3 uint8, EXIF orientation applied
    alpha: np.ndarray | None = None  # HxW uint8
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None  # Pillow's name of the file's format (PNG, JPEG, ...)
    notes: list[str] = field(default_factory=list)  # what was converted, for the user


def decode(image: Image.Image) -> Photo:
    """A Pillow image as a Photo: orientation applied, every mode brought to 8-bit RGB (+ alpha)."""
    # Pillow names a JPEG that carries a second picture (a camera's preview, a phone's gain map) MPO;
    # its first picture, the one decoded, is an ordinary JPEG, and a JPEG is what the user expects back.
    fmt = "JPEG" if image.format == "MPO" else image.format
    notes = []
    # Pillow reads a 16-bit grayscale+alpha PNG as 8-bit RGBA; only its undecoded tile (codec, extents,
    # offset, raw mode) still says so.
    raw_modes = [tile[3] for tile in getattr(image, "tile", None) or [] if len(tile) > 3 and isinstance(tile[3], str)]
    gray_alpha_16bit = fmt == "PNG" and "LA;16B" in raw_modes
    if gray_alpha_16bit or (image.mode in ("RGB", "RGBA") and any(";16" in mode for mode in raw_modes)):
        notes.append("16-bit input written as 8-bit")  # Pillow reads 16-bit RGB(A) as 8-bit already
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and fmt != "JPEG":  # an MPO's second picture is a preview, not a frame
        notes.append(f"the first of its {frames} frames enhanced")
    image.load()  # here, not under the EXIF warning catcher below: read_photo turns bomb warnings into errors
    if fmt == "JPEG" and (rows := _grey_tail(image)) >= GREY_TAIL_ROWS:
        notes.append(f"its last {rows} rows are flat grey (128), as a JPEG whose data ended early decodes: "
                     "the file may be cut short")  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:  # Pillow warns of corrupt EXIF on stderr
        warnings.simplefilter("always")
        # A TIFF's tags are the file's own, which the transposed copy below no longer has: its
        # descriptive ones (camera, date, ...) are kept, not those that lay out the TIFF's pixels.
        tiff_tags = _descriptive_tiff_tags(image) if fmt == "TIFF" else None
        image = ImageOps.exif_transpose(image)  # also drops the orientation tag from its EXIF
        unreadable = False
        try:
            exif = image.getexif()
            if tiff_tags is not None and not len(exif):
                exif = tiff_tags
            # Empty once its orientation is applied, when that was its only tag: nothing to keep.
            exif_bytes = exif.tobytes() if len(exif) else None
        except Exception:  # noqa: BLE001 - malformed tags (e.g. of the wrong type) fail in many ways
            exif_bytes, unreadable = None, True
    if caught or unreadable:
        notes.append("unreadable EXIF dropped" if exif_bytes is None else "corrupt EXIF partly kept")
    icc = image.info.get("icc_profile")
    photo = Photo(rgb=np.zeros((0, 0, 3), np.uint8), format=fmt, exif=exif_bytes, notes=notes)
    image, note = eight_bit(image)
    if note:
        photo.notes.append(note)
    mode = image.mode
    if mode == "CMYK":  # model works in RGB; a CMYK profile would be wrong on the RGB output
        converted = None
        if icc:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # littlecms's notes on rendering intents
                    srgb = ImageCms.createProfile("sRGB")
                    converted = ImageCms.profileToProfile(image, io.BytesIO(icc), srgb, outputMode="RGB")
            except ImageCms.PyCMSError:  # a damaged profile, or one that is not for CMYK
                photo.notes.append("unusable CMYK profile ignored")
        image = converted if converted is not None else image.convert("RGB")
        icc = None
        photo.notes.append("CMYK converted to sRGB")
        mode = "RGB"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    elif mode in ("RGB", "L") and "transparency" in image.info:  # a colour key: alpha, the gray kept gray
        image = image.convert("RGBA" if mode == "RGB" else "LA")
        mode = image.mode
    if mode in ("1", "L", "LA", "La") or gray_alpha_16bit:
        photo.grayscale = True
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        photo.alpha = np.asarray(rgba)[..., 3].copy()
        image = rgba
    photo.rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    photo.icc_profile = icc if icc is None else _matching_profile(icc, photo)
    return photo


def _matching_profile(icc: bytes, photo: Photo) -> bytes | None:
    """icc if it describes the output's colours (RGB, or gray for grayscale), else None with a note: a
    Lab or CMYK profile on RGB pixels would show them wrongly in colour-managed viewers."""
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError):
        photo.notes.append("unreadable ICC profile dropped")
        return None
    if space == ("GRAY" if photo.grayscale else "RGB"):
        return icc
    photo.notes.append(f"{space} ICC profile dropped (the output is {'gray' if photo.grayscale else 'RGB'})")
    return None


# The TIFF tags that describe the photo rather than the file (its pixel layout, offsets into it, its
# ICC profile, which the output's colours decide, or an editor's private data): description, camera,
# software, date, artist, copyright, resolution.
_TIFF_DESCRIPTIVE_TAGS = {270, 271, 272, 282, 283, 296, 305, 306, 315, 33432}


def _descriptive_tiff_tags(image: Image.Image) -> Image.Exif:
    """A TIFF's descriptive tags, as an EXIF record."""
    exif = Image.Exif()
    for tag, value in image.getexif().items():
        if tag in _TIFF_DESCRIPTIVE_TAGS:
            exif[tag] = value
    return exif


def read_photo(path: str | Path, max_pixels: int | None = PIL_LIMIT) -> Photo:
    """Open and fully decode an image file; ImageError (one line naming the file) on any problem."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path}: is a folder")
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a pipe or a device such as /dev/zero would never end
            raise ImageError(f"{path}: not a regular file (a device, pipe or socket)")
        if status.st_size == 0:
            raise ImageError(f"{path}: empty file")
        limit = Image.MAX_IMAGE_PIXELS
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; here the limit is the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # A JPEG's EXIF is first read on opening (for its DPI); decode() reads it again and notes it.
            warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                with Image.open(path) as image:
                    if image.format in ("JPEG", "MPO") and (damage := jpeg_damage(path.read_bytes())):
                        raise ImageError(f"{path}: corrupt or truncated image ({damage})")
                    return decode(image)  # which loads it, after reading what only the unloaded file says
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: more pixels than the {max_pixels:,}-pixel limit that guards against "
                         "decompression bombs (raised by --max-pixels, or enhance()'s max_pixels)") from None  # fmt: skip
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        raise ImageError(f"{path}: corrupt or truncated image ({error})") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image") from None
    except Exception as error:  # Pillow's plugins raise what they will (a 16-bit PSD: KeyError)
        problem = f"{type(error).__name__}: {first_line(error)}"
        raise ImageError(f"{path}: cannot read this image ({problem})") from None


def _grey_tail(image: Image.Image) -> int:
    """data.grey_tail of a decoded image, which it copies only when its last row is grey."""
    if image.mode not in ("L", "RGB"):
        return 0
    if not (np.asarray(image.crop((0, image.height - 1, image.width, image.height))) == 128).all():
        return 0  # the usual answer, from one row and without a copy of the image
    return grey_tail(np.asarray(image))


def encode(photo: Photo, rgb: np.ndarray, fmt: str) -> tuple[Image.Image, dict]:
    """The enhanced pixels as a Pillow image in the photo's mode family, with its save options."""
    if photo.grayscale:
        image = Image.fromarray(rgb, "RGB").convert("L")
    else:
        image = Image.fromarray(rgb, "RGB")
    if photo.alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        image.putalpha(Image.fromarray(photo.alpha, "L"))
    options: dict = {}
    if photo.icc_profile and photo.grayscale and fmt == "WEBP":
        # WebP has no gray mode: Pillow stores gray pixels as RGB, which a gray profile does not describe.
        photo.notes.append("GRAY ICC profile dropped (WebP stores gray pixels as RGB)")
    elif photo.icc_profile:
        options["icc_profile"] = photo.icc_profile
    if photo.alpha is not None and fmt not in ("PNG", "WEBP", "TIFF"):
        photo.notes.append(f"transparency dropped ({fmt} has none)")
    if photo.exif and fmt == "JPEG" and len(photo.exif) > JPEG_MAX_EXIF:
        photo.notes.append(f"EXIF of {len(photo.exif):,} bytes dropped (a JPEG holds at most {JPEG_MAX_EXIF:,})")
    elif photo.exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["exif"] = photo.exif
    if fmt == "JPEG":
        options.update(quality=95, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=95) if photo.format != "WEBP" else options.update(lossless=True)
    return image, options


def write_image(image: Image.Image, path: Path, fmt: str, options: dict) -> None:
    """Write atomically: a kill at any moment leaves either no file or the whole file."""
    try:
        with atomic_output(path) as tmp:
            image.save(tmp, format=fmt, **options)
    except PermissionError:
        raise ImageError(f"{path}: cannot write (permission denied)") from None
    except FileNotFoundError:
        raise ImageError(f"{path.parent}: output folder does not exist") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot write ({error.strerror or error})") from None
    except ValueError as error:  # what the format cannot hold, e.g. WebP over 16383 pixels a side
        raise ImageError(f"{path}: cannot write as {fmt} ({error})") from None


# ---------------------------------------------------------------- inference


def _ramp(length: int, overlap: int, start: bool, end: bool) -> torch.Tensor:
    """Blending weights along one axis: rising over the overlap at inner edges, never zero."""
    weight = torch.ones(length)
    if overlap > 0:
        rise = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        if start:
            weight[:overlap] = rise
        if end:
            weight[-overlap:] = torch.minimum(weight[-overlap:], rise.flip(0))
    return weight


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side start: every tile - overlap pixels, the last flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def whole_number(value) -> bool:
    """An integer of Python's or NumPy's, but not True or False."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_tiling(tile: int | str | None, overlap: int) -> None:
    """ValueError unless tile (pixels, "auto" or None) and overlap can cut an image into tiles."""
    if not (isinstance(tile, str) and tile == "auto" or tile is None or whole_number(tile)):
        raise ValueError(f"tile must be a size in pixels, 'auto' or None, got {tile!r}")
    if whole_number(tile) and tile < MIN_TILE:  # smaller tiles cost a pass each for little memory saved
        raise ValueError(f"tile must be at least {MIN_TILE} pixels, got {tile}")
    if not whole_number(overlap):
        raise ValueError(f"overlap must be a whole number of pixels, got {overlap!r}")
    if overlap < 0:
        raise ValueError(f"overlap must be 0 or more pixels, got {overlap}")
    size = AUTO_TILE if tile == "auto" else tile
    if size is not None and size <= 2 * overlap:
        raise ValueError(f"tile ({size}) must be more than twice the overlap ({overlap})")


def check_pixels(x: torch.Tensor) -> None:
    """ValueError for an image without pixels: every way in (arrays, photos) reaches an enhancer's
    enhance_tensor, which calls this."""
    height, width = x.shape[-2:]
    if not height or not width:
        raise ValueError(f"an empty image ({width}x{height} pixels) has nothing to enhance")


def auto_tile(height: int, width: int) -> int | None:
    """The tile size used when none is given: whole-image inference up to AUTO_TILE_PIXELS."""
    return None if height * width <= AUTO_TILE_PIXELS else AUTO_TILE


def _turn(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations (k in 0..7) of (..., H, W) tensors, as data.dihedral."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _unturn(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def self_ensemble(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean of run() over the 8 flips/rotations of x, each turned back (the "x8 self-ensemble"
    of Lim et al., 2017): a network is not exactly equivariant, and averaging its 8 views cancels
    part of its error, at 8 times the cost (lol-compact: +0.07 dB on held-out our485 pairs, +0.02 dB
    on eval15; README)."""
    total = _unturn(run(_turn(x, 0)), 0)
    for k in range(1, 8):
        total = total + _unturn(run(_turn(x, k)), k)
    return total / 8


class Enhancer:
    """A model loaded once, with its runtime, enhancing image after image (self_ensemble: the mean of
    its 8 flipped/rotated views, 8 times slower)."""

    def __init__(self, model: MIRNet | str | Path | None = None, device: str = "auto", precision: str = "auto",
                 self_ensemble: bool = False):  # fmt: skip
        from .zoo import DEFAULT_MODEL, load_model

        given = isinstance(model, MIRNet)  # the caller's own model: converted in a copy, if at all
        if not given:
            model = load_model(DEFAULT_MODEL if model is None else model)
        self.runtime: Runtime = select_runtime(device, precision)
        self.model = self.runtime.prepare_for_inference(model, keep_original=given).eval()
        self.self_ensemble = self_ensemble

    def check_tiling(self, tile: int | str | None, overlap: int) -> None:
        """ValueError unless this enhancer can cut images into tiles of this size and overlap."""
        check_tiling(tile, overlap)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        # Under tiling, the context pass and every tile run the 8 views in the same order, so each
        # view of a tile replays the pooled values of the same view of the whole image.
        return self_ensemble(self._forward, x) if self.self_ensemble else self._forward(x)

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            y = self.model(self.runtime.input(x))
        return y.float().clamp_(0, 1).cpu()

    def _global_context(self, x: torch.Tensor, max_pixels: int) -> dict[GlobalPool, list[torch.Tensor]]:
        """Every GlobalPool's outputs, in call order, on the whole image (area-downscaled to max_pixels)."""
        height, width = x.shape[2:]
        scale = min(1.0, (max_pixels / (height * width)) ** 0.5)
        if scale < 1.0:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            x = torch.nn.functional.interpolate(x, size=size, mode="area")
        recorded: dict[GlobalPool, list[torch.Tensor]] = {}
        pools = [m for m in self.model.modules() if isinstance(m, GlobalPool)]
        hooks = [p.register_forward_hook(lambda m, _, out: recorded.setdefault(m, []).append(out)) for p in pools]
        try:
            self._run(x)
        finally:
            for hook in hooks:
                hook.remove()
        return recorded

    def _run_with_context(self, x: torch.Tensor, context: dict[GlobalPool, list[torch.Tensor]]) -> torch.Tensor:
        calls: dict[GlobalPool, int] = {}

        def replay(module, _, out):
            # A shared module is called several times per pass: replay its values in call order.
            index = calls.get(module, 0)
            calls[module] = index + 1
            return context[module][index]

        hooks = [m.register_forward_hook(replay) for m in context]
        try:
            return self._run(x)
        finally:
            for hook in hooks:
                hook.remove()

    def enhance_tensor(self, x: torch.Tensor, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                       context_pixels: int | None = CONTEXT_PIXELS) -> torch.Tensor:  # fmt: skip
        """(1, 3, H, W) in [0, 1] to the same; tiles of tile x tile with blended overlaps when tile is
        set, all with the whole image's global context (context_pixels=None: each tile its own)."""
        _, _, height, width = x.shape
        check_pixels(x)
        whole = tile is None or (tile >= height and tile >= width)
        check_tiling(None if whole else tile, overlap)  # a tile that covers the image needs no room to blend
        if whole:
            return self._run(x)
        context = self._global_context(x, context_pixels) if context_pixels else None
        out = torch.zeros(1, 3, height, width)
        total = torch.zeros(1, 1, height, width)
        ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
        for top in ys:
            for left in xs:
                th, tw = min(tile, height), min(tile, width)
                weight = torch.outer(_ramp(th, overlap, top > 0, top + th < height),
                                     _ramp(tw, overlap, left > 0, left + tw < width))  # fmt: skip
                crop = x[:, :, top : top + th, left : left + tw]
                result = self._run(crop) if context is None else self._run_with_context(crop, context)
                out[:, :, top : top + th, left : left + tw] += result * weight
                total[:, :, top : top + th, left : left + tw] += weight
        return out / total

    def tile_for(self, height: int, width: int) -> int | None:
        """The tile size that tile="auto" stands for on an image of this size."""
        return auto_tile(height, width)

    def enhance_rgb(self, rgb: np.ndarray, tile: int | str | None = "auto", overlap: int = DEFAULT_OVERLAP) -> np.ndarray:
        """HxWx3 uint8 to HxWx3 uint8."""
        height, width = rgb.shape[:2]
        if tile == "auto":
            tile = self.tile_for(height, width)
        x = torch.tensor(rgb).permute(2, 0, 1)[None].float().div_(255)  # a copy: Pillow's arrays are read-only
        return _to_uint8(self.enhance_tensor(x, tile, overlap))


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] to HxWx3 uint8."""
    return y[0].mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


@functools.lru_cache(maxsize=4)
def _cached_enhancer(model: str | None, device: str, self_ensemble: bool) -> Enhancer:
    return Enhancer(model, device=device, self_ensemble=self_ensemble)


def enhance(image, model: Enhancer | MIRNet | str | Path | None = None, tile: int | str | None = "auto",
            overlap: int = DEFAULT_OVERLAP, device: str = "auto", self_ensemble: bool = False,
            max_pixels: int | None = PIL_LIMIT):  # fmt: skip
    """Enhance one image: a path or PIL image (returns a PIL image, with the input's ICC profile and
    EXIF in its info) or an HxWx3 / HxW NumPy array (returns an array of the same shape and dtype;
    floats are taken in [0, 1]). Weights load once. self_ensemble: average the model's 8
    flipped/rotated views (slightly better, 8 times slower). max_pixels: the largest file read from a
    path (Pillow's decompression-bomb guard; None: no limit)."""
    (model.check_tiling if isinstance(model, Enhancer) else check_tiling)(tile, overlap)
    if isinstance(model, Enhancer):  # loaded once by the caller, with its own device and precision
        enhancer = model
    elif isinstance(model, MIRNet):
        enhancer = Enhancer(model, device=device, self_ensemble=self_ensemble)
    else:
        enhancer = _cached_enhancer(None if model is None else str(model), device, self_ensemble)
    if isinstance(image, (str, Path)):
        photo = read_photo(image, max_pixels)
    elif isinstance(image, Image.Image):
        photo = decode(image)
    elif isinstance(image, np.ndarray):
        return _enhance_array(enhancer, image, tile, overlap)
    else:
        raise TypeError(f"enhance() takes a path, a PIL image or a NumPy array, not {type(image).__name__}")
    rgb = enhancer.enhance_rgb(photo.rgb, tile, overlap)
    result, _ = encode(photo, rgb, "PNG")
    if photo.icc_profile:
        result.info["icc_profile"] = photo.icc_profile
    if photo.exif:  # without the orientation tag: the pixels are already upright
        result.info["exif"] = photo.exif
    return result


def _enhance_array(enhancer: Enhancer, array: np.ndarray, tile, overlap) -> np.ndarray:
    array = np.ascontiguousarray(array)  # views such as bgr[..., ::-1] have strides torch refuses
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"expected an HxWx3 or HxW array, got shape {array.shape}")
    if array.dtype == np.uint8:
        x = torch.tensor(array).float().div_(255)
    elif np.issubdtype(array.dtype, np.floating):  # no 8-bit rounding on the way in or out
        if not np.isfinite(array).all():  # one NaN would spread through the attention to every pixel
            raise ValueError("the array holds NaN or infinite pixels")
        x = torch.from_numpy(np.clip(array, 0, 1).astype(np.float32))
    else:
        raise ValueError(f"expected uint8 or float pixels, got {array.dtype}")
    gray = array.ndim == 2
    x = x[None, None].expand(1, 3, *x.shape).contiguous() if gray else x.permute(2, 0, 1)[None].contiguous()
    if tile == "auto":
        tile = enhancer.tile_for(*array.shape[:2])
    y = enhancer.enhance_tensor(x, tile, overlap)[0].permute(1, 2, 0)
    if gray:
        y = y @ torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's convert("L")
    if array.dtype == np.uint8:
        return y.mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()
    return y.numpy().astype(array.dtype)


# ---------------------------------------------------------------- files and folders


def _image_suffixes() -> set[str]:
    # Not PostScript: Pillow renders it with Ghostscript, a program that runs the file, not a photo.
    readable = {fmt for fmt in Image.OPEN if fmt != "EPS"}
    return {suffix for suffix, fmt in Image.registered_extensions().items() if fmt in readable}


def collect_inputs(inputs: Iterable[str | Path], recursive: bool = False,
                   exclude: Path | None = None) -> Iterator[tuple[Path, Path | None, str | None]]:  # fmt: skip
    """(file, folder it was found under or None, error or None) for each input: files, folders, globs
    (what a quoted pattern matches, as the shell would have expanded it). Folders are searched without
    their hidden files and folders, and without `exclude` (the outputs of an earlier run)."""
    suffixes = _image_suffixes()
    if isinstance(inputs, (str, Path)):  # one path, not its characters
        inputs = [inputs]
    for item in inputs:
        text = str(item)
        paths = [Path(text)]
        globbed = _exists(paths[0]) is False and any(c in text for c in "*?[")
        if globbed:
            paths = [Path(match) for match in sorted(glob.glob(text, recursive=recursive))]
            # `photos/*` run again also matches its own output folder, and what is in it; `out/*.png`
            # names files inside the output folder on purpose (e.g. with another --suffix).
            base = Path(*[part for part in itertools.takewhile(lambda s: not any(c in s for c in "*?["),
                                                               Path(text).parts)])  # fmt: skip
            if exclude is not None and not base.resolve().is_relative_to(exclude):
                paths = [p for p in paths if not p.resolve().is_relative_to(exclude)]
            if not paths:
                yield Path(text), None, f"{text}: no file matches this pattern"
        for path in paths:
            if not _is_dir(path):
                yield path, None, None  # a file, or a missing or unreadable path that read_photo reports
                continue
            pattern = "**/*" if recursive else "*"
            # Outputs written inside the folder searched (`enhance . -o enhanced`) are not inputs next time.
            inside = exclude is not None and exclude != path.resolve() and exclude.is_relative_to(path.resolve())
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in p.relative_to(path).parts)
                           and not (inside and p.resolve().is_relative_to(exclude)))  # fmt: skip
            if not found and not globbed:  # a pattern's folders without images are no mistake of the user's
                yield path, None, f"{path}: no images in this folder" + ("" if recursive else " (try --recursive)")
            for file in found:
                yield file, path, None


# A path under a folder the user may not search raises PermissionError where a missing one gives
# False: such a path is taken as a file, for read_photo to report in one line as the batch goes on.
def _exists(path: Path) -> bool | None:
    """path.exists(), or None when that cannot be told."""
    try:
        return path.exists()
    except OSError:
        return None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def output_path(file: Path, folder: Path | None, outdir: Path, suffix: str, fmt: str) -> Path:
    relative = file.relative_to(folder).parent if folder is not None else Path()
    return outdir / relative / f"{file.stem}{suffix}{_SUFFIX[fmt]}"


def _file_id(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _output_format(photo: Photo, wanted: str | None) -> str:
    if wanted:
        return FORMATS[wanted.lower()]
    return photo.format if photo.format in _SUFFIX else "PNG"


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def enhance_files(inputs: Iterable[str | Path], outdir: str | Path, model: Enhancer | MIRNet | str | Path | None = None, *,
                  suffix: str = "", fmt: str | None = None, recursive: bool = False, overwrite: bool = False,
                  tile: int | str | None = "auto", overlap: int = DEFAULT_OVERLAP, device: str = "auto",
                  max_pixels: int | None = PIL_LIMIT, progress: bool = True, report=None) -> Summary:  # fmt: skip
    """Enhance many files into outdir; each failure is reported as one line and the batch goes on."""
    # Before any work: a value the enhancer cannot use would fail every image it applies to.
    (model.check_tiling if isinstance(model, Enhancer) else check_tiling)(tile, overlap)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"{outdir}: is a file; the output (-o) is a folder")
    if any(sep and sep in suffix for sep in (os.sep, os.altsep)):
        raise ValueError(f"suffix {suffix!r}: a path separator would write outside the output folder")
    if fmt is not None and str(fmt).lower() not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; use {', '.join(FORMATS)}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    summary = Summary()
    # Each file once, however often it was named (a file inside a folder also given, the same file twice).
    jobs, seen = [], set()
    for job in collect_inputs(inputs, recursive, exclude=outdir.resolve()):
        key = job[0].resolve() if job[2] is None and _exists(job[0]) else job
        if key not in seen:
            seen.add(key)
            jobs.append(job)
    originals = {p.resolve() for p, _, error in jobs if error is None and _exists(p)}
    # Also by file identity: on a case-insensitive file system IMG.JPG and IMG.jpg are one file.
    original_ids = {_file_id(p) for p in originals}
    # Output file -> the input that wrote (or kept) it in this batch. Keyed by file identity, not by
    # resolved path: on a case-insensitive disk (macOS, Windows) IMG_1.jpg and img_1.jpg are one file
    # under two names that resolve() keeps apart. A claimed output exists, so it has an identity.
    claimed: dict[tuple[int, int], Path] = {}

    def claim(target: Path, file: Path) -> None:
        claimed[_file_id(target)] = file

    def claimant(target: Path) -> Path | None:
        return claimed.get(_file_id(target)) if target.exists() else None
    enhancer: Enhancer | None = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="image", dynamic_ncols=True, leave=False)

    def say(message: str) -> None:
        message = message.replace("\n", "\\n").replace("\r", "\\r")  # one line, whatever a file's name holds
        if report is not None:
            report(message)
        elif bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def fail(message: str) -> None:
        summary.failed += 1
        summary.errors.append(message)
        say(f"error: {message}")

    for file, folder, error in jobs:
        try:
            if error:
                fail(error)
                continue
            photo = read_photo(file, max_pixels)
            out_format = _output_format(photo, fmt)
            target = output_path(file, folder, outdir, suffix, out_format)
            if target.resolve() in originals or (target.exists() and _file_id(target) in original_ids):
                fail(f"{target}: would overwrite an input; choose another -o or a --suffix")
                continue
            other = claimant(target)
            if other is not None:
                fail(f"{file}: its output {target} is {other}'s in this batch; "
                     "use separate -o folders or a --suffix")  # fmt: skip
                continue
            limit = {"WEBP": ("WebP", WEBP_MAX_SIDE), "JPEG": ("JPEG", JPEG_MAX_SIDE)}.get(out_format)
            if limit is not None and max(photo.rgb.shape[:2]) > limit[1]:  # said before the model runs
                fail(f"{file}: {photo.rgb.shape[1]}x{photo.rgb.shape[0]} is too large for {limit[0]} "
                     f"(at most {limit[1]} pixels a side); use --format png")  # fmt: skip
                continue
            if target.exists() and not overwrite:
                claim(target, file)
                summary.skipped += 1
                say(f"skipped: {target} exists (--overwrite replaces it)")
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ImageError(f"{target.parent}: cannot create output folder ({err.strerror})") from None
            if not os.access(target.parent, os.W_OK):
                raise ImageError(f"{target.parent}: output folder is not writable")
            if enhancer is None:
                enhancer = model if isinstance(model, Enhancer) else Enhancer(model, device=device)
            try:
                rgb = enhancer.enhance_rgb(photo.rgb, tile, overlap)
            except InferenceError as err:
                raise ImageError(f"{file}: {err}") from None
            except (RuntimeError, MemoryError) as err:
                if not out_of_memory(err):
                    raise
                raise ImageError(f"{file}: out of memory ({photo.rgb.shape[1]}x{photo.rgb.shape[0]}); "
                                 "a smaller --tile needs less") from None  # fmt: skip
            image, options = encode(photo, rgb, out_format)
            write_image(image, target, out_format, options)
            claim(target, file)  # a failed output leaves its name to the next input that wants it
            if photo.notes:
                say(f"note: {file}: {'; '.join(photo.notes)}")
            summary.done += 1
            summary.outputs.append(target)
        except ImageError as err:
            fail(str(err))
        finally:
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return summary


__all__ = ["Enhancer", "ImageError", "Photo", "Summary", "decode", "enhance", "enhance_files", "read_photo",
           "self_ensemble"]
