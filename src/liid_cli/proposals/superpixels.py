"""Regions that are unions of superpixels (a selective-search hierarchy's regions, or imported
MCG / label-PNG proposals): a region's mask is one table lookup on the superpixel map, and its
area and box come from the superpixels without a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SuperpixelRegions:
    """Regions that are unions of superpixels: a hierarchy's regions, or imported MCG proposals."""

    superpixels: np.ndarray  # int (H, W), ids 0..n-1
    leaves: list[np.ndarray]  # per region, the superpixel ids it covers
    areas: np.ndarray  # (R,) pixels
    boxes: np.ndarray  # (R, 4) xyxy, exclusive max
    scores: np.ndarray  # (R,) higher = more object-like
    n_superpixels: int

    def mask(self, region: int) -> np.ndarray:
        lookup = np.zeros(self.n_superpixels, dtype=bool)
        lookup[self.leaves[region]] = True
        return lookup[self.superpixels]

    @classmethod
    def from_leaves(
        cls, superpixels: np.ndarray, leaves: list[np.ndarray], scores: np.ndarray
    ) -> SuperpixelRegions:
        """Regions given by their superpixels; areas and boxes come from the superpixel map."""
        n = int(superpixels.max()) + 1 if superpixels.size else 1
        sizes, boxes = superpixel_sizes_and_boxes(superpixels, n)
        region_boxes = np.zeros((len(leaves), 4))
        areas = np.zeros(len(leaves))
        for region, ids in enumerate(leaves):
            ids = ids[(ids >= 0) & (ids < n)]
            present = ids[sizes[ids] > 0]
            leaves[region] = present
            if len(present):
                areas[region] = sizes[present].sum()
                region_boxes[region, :2] = boxes[present, :2].min(axis=0)
                region_boxes[region, 2:] = boxes[present, 2:].max(axis=0)
        return cls(superpixels, leaves, areas, region_boxes, np.asarray(scores, float), n)


def superpixel_sizes_and_boxes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count (n,) and box (n, 4) xyxy of each superpixel id 0..n-1 (zeros when absent)."""
    sizes = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    boxes = np.zeros((n, 4))
    for superpixel, found in enumerate(ndimage.find_objects(labels + 1, max_label=n)):
        if found is not None:
            rows, cols = found
            boxes[superpixel] = (cols.start, rows.start, cols.stop, rows.stop)
    return sizes, boxes
