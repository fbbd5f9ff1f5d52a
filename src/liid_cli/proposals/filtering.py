"""The proposal filter of the paper: drop tiny, whole-image and near-duplicate regions, keep top-N.

Candidates are visited best score first; a candidate's mask is made only when it must be compared
with a kept one (mask IoU can exceed the threshold only when the two areas are within that ratio)
or when it is kept, so thousands of hierarchy regions cost a few dozen masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from liid_cli.proposals.superpixels import SuperpixelRegions


@dataclass(frozen=True)
class FilterSettings:
    top_n: int  # proposals kept per image
    max_iou: float  # a candidate whose mask IoU with a kept one exceeds this is a near-duplicate
    diverse_iou: float  # above this IoU with a kept one a candidate is ranked after the others
    min_area: float  # fraction of the image; smaller regions are dropped
    max_area: (
        float  # fraction of the image; larger regions count as the whole image and are dropped
    )


class Candidates(Protocol):
    areas: np.ndarray  # (C,) pixels
    boxes: np.ndarray  # (C, 4) xyxy, exclusive max
    scores: np.ndarray  # (C,) higher first

    def mask(self, index: int) -> np.ndarray: ...


class RegionCandidates:
    """The regions of several superpixel region sets (hierarchies, MCG files) as one list."""

    def __init__(self, hierarchies: list[SuperpixelRegions]) -> None:
        self.hierarchies = hierarchies
        self.areas = np.concatenate([h.areas for h in hierarchies])
        self.boxes = np.concatenate([h.boxes for h in hierarchies])
        self.scores = np.concatenate([h.scores for h in hierarchies])
        self.starts = np.cumsum([0] + [len(h.areas) for h in hierarchies])

    def mask(self, index: int) -> np.ndarray:
        which = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.hierarchies[which].mask(index - int(self.starts[which]))


class MaskCandidates:
    """Ready-made masks (imported proposals) as a candidate list."""

    def __init__(self, masks: np.ndarray, scores: np.ndarray) -> None:
        self.masks = masks.astype(bool)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.areas = self.masks.sum(axis=(1, 2)).astype(np.float64)
        rows, cols = self.masks.any(axis=2), self.masks.any(axis=1)
        self.boxes = (
            np.stack(
                [
                    cols.argmax(axis=1),
                    rows.argmax(axis=1),
                    cols.shape[1] - cols[:, ::-1].argmax(axis=1),
                    rows.shape[1] - rows[:, ::-1].argmax(axis=1),
                ],
                axis=1,
            ).astype(np.float64)
            if len(masks)
            else np.zeros((0, 4))
        )

    def mask(self, index: int) -> np.ndarray:
        return self.masks[index]


def select(
    candidates: Candidates, settings: FilterSettings, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kept masks, bool (K, H, W) in rank order, and their scores (K,).

    Candidates go best score first. One overlapping a kept proposal with mask IoU > max_iou is
    dropped; one with IoU > diverse_iou is deferred: it is ranked after every candidate that does
    not overlap that much, so the top N covers more objects (ranking by diversity).
    """
    image_area = float(height * width)
    valid = (candidates.areas >= settings.min_area * image_area) & (
        candidates.areas <= settings.max_area * image_area
    )
    order = np.argsort(-candidates.scores, kind="stable")
    kept: list[int] = []
    kept_masks: list[np.ndarray] = []
    deferred: list[int] = []
    for threshold, pool in ((settings.diverse_iou, order[valid[order]]), (settings.max_iou, None)):
        for index in pool if pool is not None else list(deferred):
            if len(kept) >= settings.top_n:
                break
            mask, overlap = _largest_overlap(candidates, int(index), kept, kept_masks, threshold)
            if overlap > settings.max_iou:
                continue
            if overlap > threshold:
                deferred.append(int(index))
                continue
            kept_masks.append(candidates.mask(int(index)) if mask is None else mask)
            kept.append(int(index))
    if not kept:
        return np.zeros((0, height, width), dtype=bool), np.zeros(0, dtype=np.float32)
    return np.stack(kept_masks), candidates.scores[kept].astype(np.float32)


def _largest_overlap(
    candidates: Candidates,
    index: int,
    kept: list[int],
    kept_masks: list[np.ndarray],
    threshold: float,
) -> tuple[np.ndarray | None, float]:
    """The candidate's mask (if it had to be made) and its largest IoU with a kept proposal,
    computed only where the areas allow an IoU above `threshold` (IoU <= small / large area)."""
    mask = None
    largest = 0.0
    area = candidates.areas[index]
    for row, other in enumerate(kept):
        other_area = candidates.areas[other]
        if min(area, other_area) <= threshold * max(area, other_area):
            continue
        if mask is None:
            mask = candidates.mask(index)
        largest = max(
            largest,
            _iou(
                mask,
                kept_masks[row],
                candidates.boxes[index],
                candidates.boxes[other],
                area,
                other_area,
            ),
        )
    return mask, largest


def _iou(
    first: np.ndarray,
    second: np.ndarray,
    first_box: np.ndarray,
    second_box: np.ndarray,
    first_area: float,
    second_area: float,
) -> float:
    """Mask IoU, counting the intersection only inside the two boxes' overlap."""
    x0, y0 = np.maximum(first_box[:2], second_box[:2]).astype(int)
    x1, y1 = np.minimum(first_box[2:], second_box[2:]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = float(np.count_nonzero(first[y0:y1, x0:x1] & second[y0:y1, x0:x1]))
    return inter / (first_area + second_area - inter)
