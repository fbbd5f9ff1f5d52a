"""Box-to-mask baselines without learning: the box itself, its inscribed ellipse, GrabCut."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from liid_cli.box2mask.geometry import box_masks
from liid_cli.errors import LiidError

GRABCUT_ITERATIONS = 5
GRABCUT_MARGIN = 0.5  # GrabCut runs on the box grown by this x its size per side (its background)
# GrabCut's cost grows with the pixels it models: it runs on that window shrunk to at most this
# long side (measured on coco-dev: 3.6x faster than at full size, same mIoU; docs/results.md).
GRABCUT_SIDE = 320


def rect_masks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M, H, W) bool: the pixels of each box."""
    height, width = image.shape[:2]
    return box_masks(
        torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)), height, width
    ).numpy()


def ellipse_masks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M, H, W) bool: the largest axis-aligned ellipse inside each box."""
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    half_w = (boxes[:, 2] - boxes[:, 0]) / 2
    half_h = (boxes[:, 3] - boxes[:, 1]) / 2
    xs = np.arange(width, dtype=np.float32) + 0.5
    ys = np.arange(height, dtype=np.float32) + 0.5
    u = ((xs[None] - centre_x[:, None]) / half_w[:, None]) ** 2
    v = ((ys[None] - centre_y[:, None]) / half_h[:, None]) ** 2
    return u[:, None, :] + v[:, :, None] <= 1.0


def grabcut_masks(
    image: np.ndarray, boxes: np.ndarray, working_side: int | None = GRABCUT_SIDE
) -> np.ndarray:
    """(M, H, W) bool: OpenCV GrabCut initialised with each box (the box where it fails), run on
    the box's window resized to at most `working_side` pixels per side (None: full size)."""
    try:
        import cv2
    except ImportError:
        raise LiidError(
            "--baseline grabcut needs OpenCV: pip install opencv-python-headless"
        ) from None
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    result = rect_masks(image, boxes)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    for m, (x0, y0, x1, y1) in enumerate(boxes):
        margin_x, margin_y = GRABCUT_MARGIN * (x1 - x0), GRABCUT_MARGIN * (y1 - y0)
        left, top = max(0, math.floor(x0 - margin_x)), max(0, math.floor(y0 - margin_y))
        right, bottom = min(width, math.ceil(x1 + margin_x)), min(height, math.ceil(y1 + margin_y))
        window = bgr[top:bottom, left:right]
        scale = 1.0
        if working_side is not None and max(window.shape[:2]) > working_side:
            scale = working_side / max(window.shape[:2])
            size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
            window = cv2.resize(window, size, interpolation=cv2.INTER_AREA)
        rect = (
            round((x0 - left) * scale),
            round((y0 - top) * scale),
            max(1, round((x1 - x0) * scale)),
            max(1, round((y1 - y0) * scale)),
        )
        region = np.zeros(window.shape[:2], dtype=np.uint8)
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(
                window,
                region,
                rect,
                background,
                foreground,
                GRABCUT_ITERATIONS,
                cv2.GC_INIT_WITH_RECT,
            )
        except cv2.error:
            continue  # e.g. a box that leaves no background to model: keep the box
        labelled = (region == cv2.GC_FGD) | (region == cv2.GC_PR_FGD)
        if scale != 1.0:
            labelled = cv2.resize(
                labelled.astype(np.uint8), (right - left, bottom - top), interpolation=cv2.INTER_NEAREST
            ).astype(bool)
        if labelled.any():
            result[m] = False
            result[m, top:bottom, left:right] = labelled
    return result


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "rect": rect_masks,
    "ellipse": ellipse_masks,
    "grabcut": grabcut_masks,
}
