"""Proposals of a large photo at a bounded working size.

Selective search needs memory and time in proportion to the pixels (a 6000 x 4000 photo: ~5 GB
and 90 s), so an image whose longer side exceeds `max_side` is segmented downscaled (area
averaging) and its kept masks are brought back to the image's full resolution by nearest-neighbour
upsampling, one mask at a time; an image within `max_side` is processed as it is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from liid_cli import masks
from liid_cli.proposals.store import ImageProposals


def working_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 (h, w, 3) `image` downscaled so that max(h, w) <= max_side; `image` itself if it fits."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def nearest_indices(full: int, small: int) -> np.ndarray:
    """For each of `full` pixels along one axis, the pixel of a `small`-pixel axis whose centre is
    nearest (centres aligned, as the downscaling maps them)."""
    return np.minimum(((np.arange(full) + 0.5) * (small / full)).astype(np.int64), small - 1)


def upscale(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (h, w) mask or label map at (height, width) by nearest-neighbour upsampling."""
    rows = nearest_indices(height, label_map.shape[0])
    cols = nearest_indices(width, label_map.shape[1])
    return label_map[np.ix_(rows, cols)]


def full_size_proposals(
    image_id: int, mask_stack: np.ndarray, scores: np.ndarray, height: int, width: int
) -> ImageProposals:
    """ImageProposals at (height, width) from bool (K, h, w) masks found at a working size."""
    if mask_stack.shape[1:] == (height, width):
        return ImageProposals.from_masks(image_id, mask_stack, scores)
    rles, boxes = [], []
    for small in mask_stack:
        full = upscale(small, height, width)
        rles.append(masks.encode(full)["counts"])
        boxes.append(masks.box_xyxy(full))
    return ImageProposals(
        image_id=int(image_id),
        height=height,
        width=width,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        masks_rle=tuple(rles),
        scores=np.asarray(scores, dtype=np.float32).reshape(-1),
    )
