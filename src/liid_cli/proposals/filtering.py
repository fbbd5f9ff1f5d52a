"""The proposal filter of the paper: drop tiny, whole-image and near-duplicate regions, keep top-N.

Candidates are visited best score first; a candidate's mask is made only when it must be compared
with a kept one (mask IoU can exceed the threshold only when the two areas are within that ratio)
or when it is kept, so thousands of hierarchy regions cost a few dozen masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from liid_cli.proposals.selective_search import SuperpixelRegions


@dataclass(frozen=True)
class FilterSettings:
    top_n: int  # proposals kept per image
    max_iou: float  # a candidate whose mask IoU with a kept one exceeds this is a near-duplicate
    min_area: float  # fraction of the image; smaller regions are dropped
    max_area: float  # fraction of the image; larger regions count as the whole image and are dropped


class Candidates(Protocol):
    areas: np.ndarray  # (C,) pixels
    boxes: np.ndarray  # (C, 4) xyxy, exclusive max
    scores: np.ndarray  # (C,) higher first

    def mask(self, index: int) -> np.ndarray: ...


class RegionCandidates:
    """The regions of several superpixel region sets (hierarchies, MCG files) as one candidate list."""

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
        self.boxes = np.stack([
            cols.argmax(axis=1), rows.argmax(axis=1),
            cols.shape[1] - cols[:, ::-1].argmax(axis=1), rows.shape[1] - rows[:, ::-1].argmax(axis=1),
        ], axis=1).astype(np.float64) if len(masks) else np.zeros((0, 4))

    def mask(self, index: int) -> np.ndarray:
        return self.masks[index]


def select(candidates: Candidates, settings: FilterSettings, height: int,
           width: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept masks, bool (K, H, W) in rank order, and their scores (K,)."""
    image_area = float(height * width)
    valid = (candidates.areas >= settings.min_area * image_area) & (
        candidates.areas <= settings.max_area * image_area)
    order = np.argsort(-candidates.scores, kind="stable")
    kept_masks: list[np.ndarray] = []
    kept: list[int] = []
    for index in order[valid[order]]:
        if len(kept) >= settings.top_n:
            break
        mask = None
        area = candidates.areas[index]
        for row, other in enumerate(kept):
            other_area = candidates.areas[other]
            if min(area, other_area) <= settings.max_iou * max(area, other_area):
                continue
            if mask is None:
                mask = candidates.mask(index)
            if _iou(mask, kept_masks[row], candidates.boxes[index], candidates.boxes[other],
                    area, other_area) > settings.max_iou:
                break
        else:
            kept_masks.append(candidates.mask(index) if mask is None else mask)
            kept.append(int(index))
    if not kept:
        return np.zeros((0, height, width), dtype=bool), np.zeros(0, dtype=np.float32)
    return np.stack(kept_masks), candidates.scores[kept].astype(np.float32)


def _iou(first: np.ndarray, second: np.ndarray, first_box: np.ndarray, second_box: np.ndarray,
         first_area: float, second_area: float) -> float:
    """Mask IoU, counting the intersection only inside the two boxes' overlap."""
    x0, y0 = np.maximum(first_box[:2], second_box[:2]).astype(int)
    x1, y1 = np.minimum(first_box[2:], second_box[2:]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    inter = float(np.count_nonzero(first[y0:y1, x0:x1] & second[y0:y1, x0:x1]))
    return inter / (first_area + second_area - inter)
