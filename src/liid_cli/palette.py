"""The PASCAL VOC colour palette and palette PNGs (label maps any segmentation trainer reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IGNORE_LABEL = 255  # label-map value for pixels no loss or metric counts (cream in the palette)


def voc_palette() -> list[int]:
    """256 RGB entries: the bit-interleaved VOC colour map (0 black, 255 cream for `ignore`)."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette.extend((red, green, blue))
    return palette


def save_label_png(path: Path, labels: np.ndarray) -> None:
    """Save a uint8 label map as a palette PNG; the pixel values are the labels."""
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(voc_palette())
    image.save(path)


def read_label_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)
