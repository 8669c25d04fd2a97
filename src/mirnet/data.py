"""Paired low/normal-light images: discovery, checks, splits, and random training crops.

A paired folder holds ROOT/low/* and ROOT/high/*, matched by file stem, in any format Pillow reads
(LOL: our485 as lossless WebP, eval15 as PNG). Images are decoded once and held as uint8 arrays.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


class DataError(ValueError):
    """A paired folder that cannot be used; the message names the files and the problem."""


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def eight_bit(image: Image.Image) -> tuple[Image.Image, str | None]:
    """16-bit and float grayscale brought to 8-bit "L" by scaling (Pillow's convert would clip them),
    with a note of what was done; other images as they are."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # keep the top 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
        scaled = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L"), "16-bit input written as 8-bit"
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        # [0, 1] or 0-255? The reading that loses fewer pixels: [0, 1] clips those above 1 to white,
        # 0-255 rounds those in (0, 0.5) to black. A render's few highlights above 1 keep it [0, 1];
        # a dark 0-255 frame with a few bright stars stays 0-255. The note says which was taken.
        clipped = np.count_nonzero(values > 1.0)
        crushed = np.count_nonzero((values > 0) & (values < 0.5))
        unit = clipped <= crushed
        scaled = np.clip(values * (255.0 if unit else 1.0) + 0.5, 0, 255).astype(np.uint8)
        reading = "[0, 1]" if unit else "0-255"
        return Image.fromarray(scaled, "L"), f"32-bit float input read as {reading}, written as 8-bit"
    return image, None


def jpeg_damage(data: bytes) -> str | None:
    """Why a JPEG file's bytes cannot hold the image its header declares, or None. Pillow decodes such
    files without complaint (libjpeg fills what is missing with grey), so they are checked first."""
    # An interrupted copy keeps the file's size but not its tail: zeros where the image data and its
    # end marker (FF D9) were. Padding after a whole image follows that marker.
    body = data.rstrip(b"\0")
    if len(data) - len(body) >= 4096 and not body.endswith(b"\xff\xd9"):
        return f"its last {len(data) - len(body):,} bytes are zeros, an interrupted copy?"
    # Too few bytes for the size its header declares: Huffman coding spends at least one bit on each
    # 8x8 block of a full-resolution component. Walks the marker segments up to the image data.
    pos, size, arithmetic = 2, None, False
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(data):  # SOFn
            size = int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
            arithmetic = marker >= 0xC9  # can spend less than a bit on a block
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            if size and all(size) and not arithmetic:
                blocks = -(-size[0] // 8) * -(-size[1] // 8)
                if (len(data) - pos) * 8 < blocks:
                    return f"{len(data) - pos:,} bytes of image data cannot hold {size[1]}x{size[0]} pixels"
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


# Fewer flat grey rows than this end too many ordinary pictures to be worth a note.
GREY_TAIL_ROWS = 8


def grey_tail(pixels: np.ndarray) -> int:
    """How many rows at the bottom of decoded pixels (HxW or HxWxC) are exactly mid-grey (128): where
    a JPEG's data ends early, even with its end marker there, libjpeg fills the rest so, silently."""
    if not len(pixels) or not (pixels[-1] == 128).all():
        return 0  # the usual answer, from one row
    other = np.flatnonzero((pixels.reshape(len(pixels), -1) != 128).any(axis=1))
    return len(pixels) - (other[-1] + 1 if other.size else 0)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 RGB array; DataError naming the file if it cannot be read."""
    return _read_rgb(Path(path))[0]


def _read_rgb(path: Path) -> tuple[np.ndarray, bool]:
    """read_rgb's array, and whether the file is a JPEG."""
    try:
        with Image.open(path) as image:
            jpeg = image.format in ("JPEG", "MPO")
            if jpeg and (damage := jpeg_damage(path.read_bytes())):
                raise DataError(f"{path}: corrupt or truncated image ({damage})")
            return np.asarray(eight_bit(image)[0].convert("RGB")), jpeg
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Image.DecompressionBombError as error:  # not an OSError: Pillow's guard against huge headers
        raise DataError(f"{path}: too large to read safely ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (a paired folder needs low/ and high/)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in found:
                raise DataError(f"{folder}: two images with stem {path.stem!r}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


def natural_key(stem: str) -> tuple:
    """Sort key that puts numeric stems in numeric order (2 before 10), before the others."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def find_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """(stem, low path, high path) for every pair under root, in natural stem order; checked."""
    root = Path(root)
    low, high = _images_by_stem(root / "low"), _images_by_stem(root / "high")
    if not low and not high:
        raise DataError(f"{root}: no images in low/ or high/")
    only_low, only_high = sorted(set(low) - set(high)), sorted(set(high) - set(low))
    if only_low or only_high:
        lonely = [str(low[s]) for s in only_low] + [str(high[s]) for s in only_high]
        more = f" and {len(lonely) - 3} more" if len(lonely) > 3 else ""
        # A partner in a format this reader skips (e.g. a .gif) is named: else it looks absent.
        skipped = []
        for side, stems in (("high", set(only_low)), ("low", set(only_high))):
            if (root / side).is_dir():
                skipped += [str(p) for p in sorted((root / side).iterdir())
                            if p.stem in stems and p.suffix.lower() not in IMAGE_SUFFIXES]  # fmt: skip
        kinds = " ".join(sorted(IMAGE_SUFFIXES))
        unread = f" ({', '.join(skipped[:3])} not read: not one of {kinds})" if skipped else ""
        raise DataError(f"{root}: images without a partner: {', '.join(lonely[:3])}{more}{unread}")
    return [(stem, low[stem], high[stem]) for stem in sorted(low, key=natural_key)]


def data_id(root: str | Path) -> str:
    """A fingerprint of the pairs under root (names and file sizes, nothing decoded): the same data
    has the same one under any path, so a model's record can tell it from elsewhere."""
    digest = hashlib.sha256()
    for stem, low, high in find_pairs(root):
        digest.update(f"{stem}\t{low.stat().st_size}\t{high.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class Pair:
    stem: str
    low: np.ndarray  # HxWx3 uint8
    high: np.ndarray
    # Its files that are JPEGs ending in GREY_TAIL_ROWS or more flat grey rows, as a JPEG whose data
    # ended early decodes: (path, rows). They are used as decoded; cut_short says so.
    grey_tails: tuple[tuple[str, int], ...] = ()


def _load_pair(entry: tuple[str, Path, Path]) -> Pair:
    stem, low_path, high_path = entry
    (low, low_jpeg), (high, high_jpeg) = _read_rgb(low_path), _read_rgb(high_path)
    if low.shape != high.shape:
        raise DataError(
            f"{low_path} is {low.shape[1]}x{low.shape[0]} but {high_path} is {high.shape[1]}x{high.shape[0]}"
        )
    tails = ((str(path), grey_tail(pixels) if jpeg else 0)
             for path, pixels, jpeg in ((low_path, low, low_jpeg), (high_path, high, high_jpeg)))  # fmt: skip
    return Pair(stem, low, high, tuple((name, rows) for name, rows in tails if rows >= GREY_TAIL_ROWS))


def load_pairs(root: str | Path, stems: list[str] | None = None, threads: int = 4) -> list[Pair]:
    """Decode the pairs under root (all, or those named in stems) into memory."""
    entries = find_pairs(root)
    if stems is not None:
        wanted = set(stems)
        entries = [e for e in entries if e[0] in wanted]
    with ThreadPoolExecutor(threads) as pool:  # Pillow decodes without the GIL
        return list(pool.map(_load_pair, entries))


def smaller_than(pairs: list[Pair], size: int, what: str) -> str | None:
    """How many of pairs are below size pixels on a side, named with their sizes (None if none are)."""
    small = [p for p in pairs if min(p.low.shape[:2]) < size]
    if not small:
        return None
    named = ", ".join(f"{p.stem} ({p.low.shape[1]}x{p.low.shape[0]})" for p in small[:3])
    more = f" and {len(small) - 3} more" if len(small) > 3 else ""
    return f"{len(small)} of {len(pairs)} pairs are smaller than {what}: {named}{more}"


def cut_short(pairs: list[Pair]) -> str | None:
    """A note naming the JPEGs of pairs that end in flat grey rows, as those whose data ended early
    decode (None if none do). Such a file is used as it decodes: its grey rows may be the picture's own."""
    tails = [f"{name} ({rows} rows)" for pair in pairs for name, rows in pair.grey_tails]
    if not tails:
        return None
    more = f" and {len(tails) - 3} more" if len(tails) > 3 else ""
    return (f"{len(tails)} JPEG{'s' if len(tails) > 1 else ''} may be cut short, ending in flat grey (128) "
            f"as a JPEG whose data ended early decodes; used as decoded: {', '.join(tails[:3])}{more}")


def split_by_scene(pairs: list[Pair], validation: int, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """Split into (train, validation) with about `validation` pairs held out, keeping scenes together.

    In LOL several low-light shots share one reference image (152 of our485's 485 references are
    copies of 66 images); a random split by pair would validate on references seen in training. Pairs
    are grouped by the hash of their reference, groups are shuffled with `seed`, and whole groups go
    to validation until it holds at least `validation` pairs. Other shots of a scene, with references
    of their own, are not grouped (LOL's eval15 is mostly such shots of our485's scenes): with seed 0,
    27 of the 65 pairs held out for 64 show a scene of the training side
    (scripts/scene_overlap.py tells which, and scores models on both kinds apart).
    """
    if not 0 <= validation < len(pairs):
        raise ValueError(f"cannot hold out {validation} of {len(pairs)} pairs")
    groups: dict[str, list[Pair]] = {}
    for pair in pairs:
        groups.setdefault(hashlib.sha1(pair.high.tobytes()).hexdigest(), []).append(pair)
    order = list(groups.values())
    np.random.default_rng(seed).shuffle(order)
    held: list[Pair] = []
    kept: list[Pair] = []
    for group in order:
        (held if len(held) < validation else kept).extend(group)
    return kept, held


# LOL shoots most scenes several times, each shot with its own reference, whose exposure can differ
# by 13 dB from its neighbour's: such shots are not byte-identical copies, so split_by_scene's hash
# does not group them. On our485 the 48x32 grey thumbnails of one scene's references correlate at
# 0.92-1.00 (objects moved or added between shots), other scenes' at 0.85 or less.
SAME_SCENE = 0.9


def scene_thumbnail(image: np.ndarray) -> np.ndarray:
    """A 48x32 grey thumbnail of an RGB image with zero mean and unit norm: the dot product of two is
    the correlation of their layouts, blind to exposure (and to contrast)."""
    grey = Image.fromarray(image).convert("L").resize((48, 32), Image.Resampling.BILINEAR)
    values = np.asarray(grey, np.float64).ravel()
    values = values - values.mean()
    return values / max(float(np.linalg.norm(values)), 1e-9)


def nearest_scenes(queries: list[Pair], references: list[Pair]) -> list[tuple[str, float]]:
    """For each query, the reference pair whose reference image looks most like the query's (its
    stem) and the correlation of their thumbnails; the same scene when at least SAME_SCENE."""
    if not references:
        raise ValueError("no reference pairs to compare with")
    table = np.stack([scene_thumbnail(p.high) for p in references])
    nearest = []
    for query in queries:
        correlations = table @ scene_thumbnail(query.high)
        best = int(correlations.argmax())
        nearest.append((references[best].stem, float(correlations[best])))
    return nearest


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of an HxWxC array (k in 0..7)."""
    if k >= 4:
        array = array[:, ::-1]
    return np.rot90(array, k % 4)


class CropSampler:
    """Random aligned crops of training pairs; all randomness from one numpy Generator whose state
    is saved in checkpoints, so a resumed run draws exactly the crops an uninterrupted run would."""

    def __init__(self, pairs: list[Pair], crop: int, batch_size: int, augment: bool, seed: int,
                 exposure_jitter: float = 1.0, mixup: float = 0.0):  # fmt: skip
        if exposure_jitter < 1:
            raise ValueError(f"exposure jitter must be at least 1 (1: off), got {exposure_jitter}")
        if not 0 <= mixup <= 1:
            raise ValueError(f"mixup is the share of batches mixed, from 0 to 1, got {mixup}")
        if mixup and batch_size < 2:
            raise ValueError("mixup blends pairs of a batch: it needs a batch of 2 or more")
        if not pairs:
            raise DataError("no training pairs")
        if small := smaller_than(pairs, crop, f"the {crop}px crop"):
            raise DataError(f"training data: {small}")
        self.pairs, self.crop, self.batch_size, self.augment = pairs, crop, batch_size, augment
        self.exposure_jitter, self.mixup = exposure_jitter, mixup
        self.rng = np.random.default_rng(seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high) float tensors of shape (batch, 3, crop, crop) in [0, 1]; with exposure_jitter
        S > 1 each low crop is multiplied by a gain drawn log-uniformly from [1/S, S]; with mixup P,
        a share P of the batches blend each pair with a random pair of the batch (at times itself),
        both images alike."""
        lows, highs = [], []
        for index in self.rng.integers(len(self.pairs), size=self.batch_size):
            pair = self.pairs[index]
            h, w = pair.low.shape[:2]
            top, left = self.rng.integers(h - self.crop + 1), self.rng.integers(w - self.crop + 1)
            window = (slice(top, top + self.crop), slice(left, left + self.crop))
            low, high = pair.low[window], pair.high[window]
            if self.augment:
                k = int(self.rng.integers(8))
                low, high = dihedral(low, k), dihedral(high, k)
            lows.append(low)
            highs.append(high)
        low, high = to_tensor(np.stack(lows)), to_tensor(np.stack(highs))
        if self.exposure_jitter > 1:
            # LOL's references do not follow their inputs' brightness (several shots of one scene at
            # different exposures share one reference): scaling the input alone teaches the model to
            # set the output's exposure from the scene, not from how dark the shot happened to be.
            spread = np.log(self.exposure_jitter)
            gains = np.exp(self.rng.uniform(-spread, spread, size=self.batch_size)).astype(np.float32)
            low = (low * torch.from_numpy(gains)[:, None, None, None]).clamp_(0, 1)
        if self.mixup and self.rng.random() < self.mixup:
            # Mixup of pairs, as MIRNet v2 and Retinexformer train on LOL (BasicSR's Mixing_Augment:
            # one Beta(1.2, 1.2) weight per batch, a random permutation, half the batches there):
            # blends of two scenes and of their references, for more variety than 485 pairs give.
            weight = float(self.rng.beta(1.2, 1.2))
            partner = torch.from_numpy(self.rng.permutation(self.batch_size))
            low = weight * low + (1 - weight) * low[partner]
            high = weight * high + (1 - weight) * high[partner]
        return low, high

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (..., H, W, 3) to float (..., 3, H, W) in [0, 1]."""
    array = np.ascontiguousarray(images)
    if not array.flags.writeable:  # Pillow's arrays are read-only; torch wants to own writable memory
        array = array.copy()
    return torch.from_numpy(array).movedim(-1, -3).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float (..., 3, H, W) in [0, 1] to uint8 (..., H, W, 3), clamped and rounded."""
    return images.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()
