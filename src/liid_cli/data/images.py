"""Image reading with errors that name the file.

Every reader sees an image as it is displayed: EXIF orientation applied, 16-bit samples scaled to
8 bits (not clipped), transparent pixels shown over white, palette and grey images as RGB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from liid_cli.errors import LiidError

HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey (PNG, TIFF) as PIL opens it
WITH_ALPHA = ("RGBA", "LA", "PA")


EXIF_ORIENTATION = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) in its displayed orientation."""
    with _opened(path) as image:
        return to_rgb(ImageOps.exif_transpose(image), path)


def displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (after EXIF orientation), from the file's header alone."""
    with _opened(path) as image:
        width, height = image.size
        turned = image.getexif().get(EXIF_ORIENTATION, 1) in TRANSPOSING_ORIENTATIONS
        return (height, width) if turned else (width, height)


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """An opened image; every way a file can fail to open or decode is a LiidError naming it."""
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise LiidError(f"{path}: image file not found; check the data set's image folder") from None
    except Image.DecompressionBombError as error:
        raise LiidError(f"{path}: image too large to decode safely ({error}); downscale the file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise LiidError(f"{path}: cannot decode the image ({error}); replace or remove the file") from None


def to_rgb(image: Image.Image, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) of a decoded image of any PIL mode; `path` names the file in errors."""
    if image.mode in HIGH_BIT_DEPTH:
        grey = (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        raise LiidError(f"{path}: floating-point image (mode F) has no defined display range; "
                        "save it as an 8- or 16-bit PNG or JPEG")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in WITH_ALPHA:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        return np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def image_size(path: Path) -> tuple[int, int]:
    """Displayed (width, height) after a full decode, so a corrupt file is caught when the index is made."""
    array = read_rgb(path)
    return array.shape[1], array.shape[0]
