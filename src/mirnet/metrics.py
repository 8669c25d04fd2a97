"""Image-quality metrics in the field's conventions, on 8-bit RGB images (HxWx3 uint8 arrays).

- PSNR: peak 255, mean squared error over all pixels and channels.
- SSIM: Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255),
  computed on each RGB channel over the 'valid' window positions and averaged.
- GT-mean PSNR: the output rescaled so that its mean grey level equals the ground truth's, then
  PSNR. It hides global brightness errors, so it is reported separately and labelled, never as the
  headline number.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _check(output: np.ndarray, target: np.ndarray) -> None:
    if output.shape != target.shape or output.ndim != 3 or output.shape[2] != 3:
        raise ValueError(f"expected two HxWx3 images of one size, got {output.shape} and {target.shape}")


def psnr(output: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB with peak 255 (inf for identical images)."""
    _check(output, target)
    mse = np.mean((output.astype(np.float64) - target.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """'Valid' filtering of (N, 1, H, W) with the normalised Gaussian window, as two 1-D passes."""
    t = torch.arange(size, dtype=x.dtype, device=x.device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    # The N images as the channels of one depthwise convolution: the same sums, but oneDNN has no
    # fast path for N one-channel images (several times slower on a CPU: scripts/bench_ssim.py).
    n = x.shape[0]
    y = x.reshape(1, n, *x.shape[-2:])
    y = F.conv2d(y, g.view(1, 1, size, 1).expand(n, 1, size, 1), groups=n)
    y = F.conv2d(y, g.view(1, 1, 1, size).expand(n, 1, 1, size), groups=n)
    return y.reshape(n, 1, *y.shape[-2:])


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Wang et al.'s SSIM at every 'valid' window position of (N, 1, H, W) images; differentiable."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x**2
    var_y = _gaussian_blur(y * y) - mu_y**2
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) per RGB channel, averaged; data range 255."""
    _check(output, target)
    if min(output.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {output.shape[1]}x{output.shape[0]}")
    x = torch.from_numpy(output.astype(np.float64)).permute(2, 0, 1)[:, None]  # (3, 1, H, W)
    y = torch.from_numpy(target.astype(np.float64)).permute(2, 0, 1)[:, None]
    return float(ssim_map(x, y, 255.0).mean(dim=(1, 2, 3)).mean())


def grey_mean(image: np.ndarray) -> float:
    """Mean luma (ITU-R BT.601 weights) of an RGB image."""
    return float((image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).mean())


def gt_mean_psnr(output: np.ndarray, target: np.ndarray) -> float:
    """PSNR after scaling the output so its mean grey level matches the target's (labelled GT-mean)."""
    _check(output, target)
    scale = grey_mean(target) / max(grey_mean(output), 1e-6)
    rescaled = np.clip(output.astype(np.float64) * scale, 0, 255)
    mse = np.mean((rescaled - target.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def score(output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """All metrics of one image: psnr, ssim, gt_mean_psnr."""
    return {"psnr": psnr(output, target), "ssim": ssim(output, target), "gt_mean_psnr": gt_mean_psnr(output, target)}
