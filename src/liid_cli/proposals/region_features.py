"""Per-region features of selective search: colour spaces, quantised colour and oriented-texture
histograms, each made with one `bincount` per image (never a loop over pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage import color

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8


def _hsv(image: np.ndarray) -> np.ndarray:
    return color.rgb2hsv(image)


def _lab(image: np.ndarray) -> np.ndarray:
    lab = color.rgb2lab(image)
    return np.clip((lab + [0.0, 128.0, 128.0]) / [100.0, 255.0, 255.0], 0.0, 1.0)


def _rgb(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0


def _rgi(image: np.ndarray) -> np.ndarray:
    """Normalised r, g plus intensity: the paper's rgI space."""
    rgb = image.astype(np.float64)
    total = rgb.sum(axis=2, keepdims=True) + 1e-6
    return np.concatenate([rgb[..., :2] / total, rgb.mean(axis=2, keepdims=True) / 255.0], axis=2)


# Every colour space maps uint8 RGB to float channels in [0, 1].
COLOUR_SPACES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hsv": _hsv,
    "lab": _lab,
    "rgb": _rgb,
    "rgi": _rgi,
}


def quantised(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each value in [0, 1]: (H, W, C) values -> (C, H, W) int."""
    return np.minimum((np.moveaxis(values, 2, 0) * bins).astype(np.int64), bins - 1)


def histograms(bin_indices: np.ndarray, labels: np.ndarray, n_regions: int, bins: int) -> np.ndarray:
    """Per-region histograms of each channel of bin indices (C, H, W) -> (n, C * bins)."""
    base = labels.ravel().astype(np.int64) * bins
    return np.concatenate(
        [
            np.bincount(base + channel.ravel(), minlength=n_regions * bins).reshape(n_regions, bins)
            for channel in bin_indices
        ],
        axis=1,
    ).astype(np.float64)


def texture_bins(values: np.ndarray) -> np.ndarray:
    """Gaussian-derivative responses (sigma 1) in 8 oriented half-directions per channel, each
    scaled to [0, 1] by its maximum and quantised: (8 C, H, W) bin indices."""
    responses = []
    for channel in range(values.shape[2]):
        plane = values[..., channel].astype(np.float32)
        dy = ndimage.gaussian_filter(plane, 1.0, order=(1, 0))
        dx = ndimage.gaussian_filter(plane, 1.0, order=(0, 1))
        for angle in np.arange(TEXTURE_ORIENTATIONS // 2) * np.pi / (TEXTURE_ORIENTATIONS // 2):
            directional = np.float32(np.cos(angle)) * dx + np.float32(np.sin(angle)) * dy
            for response in (np.maximum(directional, 0.0), np.maximum(-directional, 0.0)):
                peak = max(float(response.max()), 1e-12)
                responses.append(
                    np.minimum(
                        (response * (TEXTURE_BINS / peak)).astype(np.int64), TEXTURE_BINS - 1
                    )
                )
    return np.stack(responses)


def normalised(counts: np.ndarray) -> np.ndarray:
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)
