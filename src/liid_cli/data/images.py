"""Image reading with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from liid_cli.errors import LiidError


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise LiidError(f"{path}: image file not found; check the data set's image folder") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise LiidError(f"{path}: cannot decode the image ({error}); replace or remove the file") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after a full decode, so a corrupt file is caught when the index is made."""
    array = read_rgb(path)
    return array.shape[1], array.shape[0]
