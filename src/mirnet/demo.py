"""`mirnet demo`: enhance a sample (or a given photo) and write a side-by-side picture.

The package ships no photographs, so the sample is drawn here: a small scene, darkened and made
noisy the way LOL's low-light shots are (low gain, photon and read noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def sample_scene(height: int = 400, width: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(low-light, well-exposed) HxWx3 uint8 renderings of the same drawn scene."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (1 - y) * np.array([120, 170, 230]) + y * np.array([230, 200, 160])
    image = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    floor = int(height * 0.62)
    draw.rectangle([0, floor, width, height], fill=(110, 90, 70))
    for i in range(0, width, 40):  # a tiled floor: fine texture for the noise to hide
        for j in range(floor, height, 20):
            if (i // 40 + j // 20) % 2:
                draw.rectangle([i, j, i + 39, j + 19], fill=(150, 125, 95))
    colors = [(200, 40, 40), (40, 160, 70), (40, 80, 200), (230, 190, 40), (150, 60, 170)]
    for k, color in enumerate(colors):
        left = int(width * (0.06 + 0.18 * k))
        top = int(floor - height * (0.15 + 0.08 * (k % 3)))
        draw.rectangle([left, top, left + width // 8, floor], fill=color, outline=(20, 20, 20), width=2)
    draw.ellipse([width * 0.78, height * 0.06, width * 0.92, height * 0.27], fill=(250, 240, 200))
    draw.text((width * 0.05, height * 0.06), "mirnet demo", fill=(20, 20, 40), font_size=max(12, height // 14))
    bright = np.asarray(image).astype(np.float64) / 255
    # Low light: about 1/10 of the exposure, then shot noise (Poisson-like) and read noise.
    signal = 0.1 * bright**1.2
    noisy = signal + rng.normal(0, 1, signal.shape) * np.sqrt(signal * 0.004 + 0.004**2)
    low = np.clip(noisy * 255 + 0.5, 0, 255).astype(np.uint8)
    return low, np.asarray(image)


def side_by_side(panels: list[tuple[str, np.ndarray]]) -> Image.Image:
    """Images in a row, each with its label above."""
    height, width = panels[0][1].shape[:2]
    band = max(18, height // 16)
    canvas = Image.new("RGB", (width * len(panels), height + band), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (label, pixels) in enumerate(panels):
        canvas.paste(Image.fromarray(pixels).convert("RGB"), (i * width, band))
        draw.text((i * width + 6, 2), label, fill=(0, 0, 0), font_size=band - 4)
    return canvas


# The PNG text chunk that marks a demo picture: the one kind of file the demo replaces unasked, so that
# running it again refreshes its picture without ever writing over anything else.
MARK = ("Software", "mirnet demo")


# The size of the sample's picture as the demo wrote it before it marked its pictures (2026-12-04):
# three 600x400 panels under a 25-pixel band of titles.
UNMARKED_SAMPLE_SIZE = (1800, 425)


def written_by_demo(path: str | Path) -> bool:
    """Whether `path` is a picture this demo wrote: a PNG with its mark, or the sample's picture from
    before the mark (so that `./run.sh demo` run again refreshes it)."""
    try:
        with Image.open(path) as picture:
            if picture.format != "PNG":
                return False
            if picture.info.get(MARK[0]) == MARK[1]:
                return True
            # Unmarked: the sample's size, no metadata, and the white band of titles at its top left.
            return picture.size == UNMARKED_SAMPLE_SIZE and not picture.info and \
                picture.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def run_demo(output: str | Path = "mirnet-demo.png", image: str | Path | None = None, model=None,
             overwrite: bool = False) -> Path:  # fmt: skip
    """Enhance the sample (or `image`) with the default model (or `model`); write input | output as a
    PNG, replacing an earlier demo picture there but any other file only when `overwrite`."""
    from PIL.PngImagePlugin import PngInfo

    from .enhance import Enhancer, read_photo
    from .files import atomic_output, same_file
    from .zoo import model_file

    output = Path(output)
    if image is not None and same_file(output, image):
        raise ValueError(f"{output}: refusing to overwrite the input photo; choose another -o")
    if isinstance(model, (str, Path, type(None))) and same_file(output, model_file(model)):
        raise ValueError(f"{output}: refusing to overwrite the input weights; choose another -o")
    if output.suffix.lower() != ".png":
        raise ValueError(f"{output}: the demo writes a PNG picture; give -o a name ending in .png")
    if output.is_dir():
        raise ValueError(f"{output}: is a folder; give -o a file name ending in .png")
    if output.exists() and not overwrite and not written_by_demo(output):
        raise ValueError(f"{output}: already exists and is not a demo picture; choose another -o, "
                         "or replace it with --overwrite")  # fmt: skip
    enhancer = Enhancer(model)
    if image is None:
        low, reference = sample_scene()
        panels = [("low-light sample (drawn)", low), ("mirnet", enhancer.enhance_rgb(low)), ("reference", reference)]
    else:
        low = read_photo(image).rgb
        panels = [(f"input: {Path(image).name}", low), ("mirnet", enhancer.enhance_rgb(low))]
    mark = PngInfo()
    mark.add_text(*MARK)
    with atomic_output(output) as tmp:
        side_by_side(panels).save(tmp, format="PNG", pnginfo=mark)
    return output
