"""Binary masks as COCO RLE (the one format masks travel in), boxes xyxy internally."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Binary (H, W) mask -> COCO RLE with `counts` as str (JSON-safe)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def encode_many(masks: np.ndarray) -> list[dict[str, Any]]:
    """(N, H, W) binary masks -> list of COCO RLE."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (counts as str or bytes; compressed or not) -> bool (H, W)."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def segmentation_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> compressed RLE with bytes
    counts (what pycocotools' functions take)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return _bytes_counts(segmentation)


def area(rle: dict[str, Any]) -> int:
    return int(mask_utils.area(_bytes_counts(rle)))


def box_xyxy(mask: np.ndarray) -> np.ndarray:
    """Tight box [x0, y0, x1, y1) of a binary mask in pixels; zeros for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


def xyxy_to_xywh(box: np.ndarray | list[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def iou_matrix(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> np.ndarray:
    """Mask IoU between two lists of RLEs, (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return np.asarray(mask_utils.iou([_bytes_counts(r) for r in a], [_bytes_counts(r) for r in b],
                                     [0] * len(b)))


def mask_nms(
    rles: list[dict[str, Any]], scores: np.ndarray, labels: np.ndarray, iou: float
) -> np.ndarray:
    """Greedy NMS by mask IoU within each label: indices kept, best score first."""
    overlap = iou_matrix(rles, rles) > iou
    overlap &= labels[:, None] == labels[None, :]
    alive = np.ones(len(rles), dtype=bool)
    kept = []
    for index in np.argsort(-scores, kind="stable"):
        if alive[index]:
            kept.append(index)
            alive &= ~overlap[index]
    return np.array(kept, dtype=np.int64)


def _bytes_counts(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
