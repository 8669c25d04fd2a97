"""Classical low-light enhancement methods, as baselines: HxWx3 uint8 RGB in, the same out.

They need the `baselines` extra (OpenCV and SciPy): scripts/setup-env.sh baselines, or
pip install -e ".[baselines]".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps


def autocontrast(image: np.ndarray) -> np.ndarray:
    """PIL's autocontrast: stretch each channel's range to 0..255 (the seeds' comparison)."""
    return np.asarray(ImageOps.autocontrast(Image.fromarray(image)))


def histogram_equalization(image: np.ndarray) -> np.ndarray:
    """Global histogram equalization of each RGB channel (PIL's equalize)."""
    return np.asarray(ImageOps.equalize(Image.fromarray(image)))


def clahe(image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (OpenCV) of the L channel in CIELAB."""
    import cv2

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def gamma_correction(image: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """Power-law brightening: 255 * (x / 255) ** (1 / gamma)."""
    lut = np.round(255.0 * (np.arange(256) / 255.0) ** (1.0 / gamma)).astype(np.uint8)
    return lut[image]


def lime(
    image: np.ndarray, alpha: float = 0.15, sigma: float = 2.0, gamma: float = 0.8, eps: float = 1e-3
) -> np.ndarray:
    """LIME (Guo, Li and Ling, TIP 2017): refine the max-RGB illumination map, then divide it out:
    image / T**gamma, T from lime_illumination. The paper's optional BM3D denoising is not applied."""
    light = image.astype(np.float64) / 255.0
    t = np.clip(lime_illumination(light.max(axis=2), alpha, sigma, eps), eps, 1.0) ** gamma
    return np.clip(light / t[..., None] * 255.0, 0, 255).round().astype(np.uint8)


def lime_illumination(t_hat: np.ndarray, alpha: float = 0.15, sigma: float = 2.0, eps: float = 1e-3) -> np.ndarray:
    """LIME's refined illumination map: the T that minimises, over horizontal and vertical forward
    differences d (none across the right and bottom borders),

        ||T - T_hat||^2 + alpha * sum_d W_d * (d T)^2 / (|d T_hat| + eps),

    the paper's eq. 19 (its l1 smoothness term made quadratic by reweighting with the initial map's
    gradients), with its third weighting strategy W_d = 1 / (|G_sigma * d T_hat| + eps) (the Gaussian
    window's weights sum to 1). The minimiser solves a sparse linear system, solved exactly here."""
    import cv2
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    h, w = t_hat.shape
    ksize = int(2 * round(3 * sigma) + 1)

    def weight(gradient: np.ndarray) -> np.ndarray:
        smoothed = cv2.GaussianBlur(gradient, (ksize, ksize), sigma)
        return 1.0 / ((np.abs(smoothed) + eps) * (np.abs(gradient) + eps))

    dx = np.diff(t_hat, axis=1, append=t_hat[:, -1:])  # forward differences, zero at the border
    dy = np.diff(t_hat, axis=0, append=t_hat[-1:, :])
    wx, wy = weight(dx), weight(dy)
    wx[:, -1] = 0.0  # no difference across the right and bottom borders
    wy[-1, :] = 0.0

    n = h * w
    index = np.arange(n).reshape(h, w)
    # Forward-difference operators as sparse matrices: (D x)[i] = x[i + step] - x[i].
    ex = sp.csr_matrix((np.r_[-np.ones(n), np.ones(n - 1)], (np.r_[np.arange(n), np.arange(n - 1)],
                        np.r_[np.arange(n), np.arange(1, n)])), shape=(n, n))  # fmt: skip
    ey = sp.csr_matrix((np.r_[-np.ones(n), np.ones(n - w)], (np.r_[np.arange(n), np.arange(n - w)],
                        np.r_[np.arange(n), index.ravel()[w:]])), shape=(n, n))  # fmt: skip
    system = sp.identity(n, format="csr") + alpha * (
        ex.T @ sp.diags(wx.ravel()) @ ex + ey.T @ sp.diags(wy.ravel()) @ ey
    )
    return spsolve(system.tocsc(), t_hat.ravel()).reshape(h, w)


def multiscale_retinex(image: np.ndarray, sigmas: tuple[float, ...] = (15, 80, 250)) -> np.ndarray:
    """Multi-scale Retinex (Jobson et al. 1997): mean of log(I) - log(G_sigma * I) over scales, per
    channel, then each channel stretched between its 1st and 99th percentiles."""
    import cv2

    light = image.astype(np.float64) + 1.0
    retinex = np.zeros_like(light)
    for s in sigmas:
        retinex += np.log(light) - np.log(cv2.GaussianBlur(light, (0, 0), s))
    retinex /= len(sigmas)
    low, high = np.percentile(retinex, [1, 99], axis=(0, 1))
    stretched = (retinex - low) / np.maximum(high - low, 1e-6)
    return np.clip(stretched * 255.0, 0, 255).round().astype(np.uint8)


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "autocontrast": autocontrast,
    "histogram-eq": histogram_equalization,
    "clahe": clahe,
    "gamma-2.2": gamma_correction,
    "lime": lime,
    "msr": multiscale_retinex,
}
