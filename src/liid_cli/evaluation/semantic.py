"""Semantic metrics from label maps: per-class IoU and mIoU over a confusion matrix.

Label maps hold internal ids (0 = background, 1..K); `IGNORE_LABEL` (255) in the ground truth is
skipped. A predicted 255 (or any id > K) is "no class": it counts against the true class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import masks
from liid_cli.errors import LiidError
from liid_cli.palette import IGNORE_LABEL, read_label_png


class ConfusionMatrix:
    """(true, predicted) pixel counts; rows = truth 0..K, columns = prediction 0..K+1."""

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels  # K + 1 (background included)
        self.counts = np.zeros((num_labels, num_labels + 1), dtype=np.int64)

    def update(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        if truth.shape != prediction.shape:
            raise ValueError(f"label maps differ in shape: {truth.shape} vs {prediction.shape}")
        keep = truth != IGNORE_LABEL
        true = truth[keep].astype(np.int64)
        if true.size and true.max() >= self.num_labels:
            raise ValueError(
                f"ground-truth label {int(true.max())} outside 0..{self.num_labels - 1}"
            )
        # Any prediction above K (255 included) lands in the extra "no class" column.
        predicted = np.minimum(prediction[keep].astype(np.int64), self.num_labels)
        cells = np.bincount(true * (self.num_labels + 1) + predicted, minlength=self.counts.size)
        self.counts += cells.reshape(self.counts.shape)

    def iou(self) -> np.ndarray:
        """Per-class IoU (K+1,); NaN for a class absent from both truth and prediction."""
        true_positive = np.diag(self.counts[:, : self.num_labels]).astype(np.float64)
        truth_total = self.counts.sum(axis=1)
        predicted_total = self.counts[:, : self.num_labels].sum(axis=0)
        union = truth_total + predicted_total - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)


def evaluate_semantic(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str]
) -> dict[str, Any]:
    """mIoU and per-class IoU over (truth, prediction) label-map pairs.

    `class_names` lists every label including background first (K+1 names). The mean runs over
    the classes that occur in the truth or the prediction.
    """
    matrix = ConfusionMatrix(len(class_names))
    images = 0
    for truth, prediction in pairs:
        matrix.update(truth, prediction)
        images += 1
    ious = matrix.iou()
    defined = ious[~np.isnan(ious)]
    labelled = matrix.counts.sum()
    return {
        "mIoU": float(defined.mean()) if defined.size else None,
        "pixel_accuracy": float(np.trace(matrix.counts[:, : len(class_names)]) / labelled)
        if labelled
        else None,
        "num_images": images,
        "per_class": {
            name: (None if np.isnan(value) else float(value))
            for name, value in zip(class_names, ious, strict=True)
        },
    }


def label_map_from_instances(
    rles: Sequence[dict[str, Any]],
    labels: Sequence[int],
    height: int,
    width: int,
    overlap_label: int | None = IGNORE_LABEL,
) -> np.ndarray:
    """Paint instance masks into one uint8 label map (0 = background).

    Where instances of different classes overlap the pixel gets `overlap_label`; with None the
    later (in the given order) instance wins. Same-class overlaps keep the class.
    """
    label_map = np.zeros((height, width), dtype=np.uint8)
    if not rles:
        return label_map
    stacked = np.stack([masks.decode(r) for r in rles])  # (M, H, W) bool
    label_values = np.asarray(labels, dtype=np.int64)
    painted = np.where(stacked, label_values[:, None, None], 0)
    top = painted.max(axis=0)
    bottom = np.where(stacked, label_values[:, None, None], np.iinfo(np.int64).max).min(axis=0)
    covered = stacked.any(axis=0)
    if overlap_label is None:
        last = stacked.shape[0] - 1 - np.argmax(stacked[::-1], axis=0)
        label_map[covered] = label_values[last[covered]]
    else:
        label_map[covered] = top[covered]
        label_map[covered & (top != bottom)] = overlap_label
    return label_map


def ground_truth_label_maps(
    ground_truth: dict[str, Any], category_to_label: dict[int, int]
) -> dict[int, np.ndarray]:
    """Per image id, the label map of a COCO instances document (crowd regions -> 255)."""
    by_image: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in ground_truth["images"]}
    for ann in ground_truth["annotations"]:
        by_image[int(ann["image_id"])].append(ann)
    maps = {}
    for image in ground_truth["images"]:
        anns = by_image[int(image["id"])]
        height, width = int(image["height"]), int(image["width"])
        objects = [a for a in anns if not a.get("iscrowd", 0)]
        label_map = label_map_from_instances(
            [masks.segmentation_rle(a["segmentation"], height, width) for a in objects],
            [category_to_label[int(a["category_id"])] for a in objects],
            height,
            width,
        )
        for crowd in (a for a in anns if a.get("iscrowd", 0)):
            label_map[masks.decode(masks.segmentation_rle(crowd["segmentation"], height, width))] = (
                IGNORE_LABEL
            )
        maps[int(image["id"])] = label_map
    return maps


def read_prediction_maps(folder: Path, names: Sequence[str]) -> Iterable[np.ndarray]:
    """Palette PNGs `<folder>/<name>.png` in the given order; a missing one is a clear error."""
    for name in names:
        path = folder / f"{name}.png"
        if not path.is_file():
            raise LiidError(
                f"missing {path}: the semantic maps do not cover image {name!r}; rerun the stage"
            )
        yield read_label_png(path)
