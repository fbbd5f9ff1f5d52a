"""Selective search that keeps region masks (Uijlings et al., IJCV 2013).

Felzenszwalb superpixels (scikit-image) in several colour spaces and scales, then greedy
hierarchical grouping of adjacent regions by a sum of colour, texture, size and fill similarities.
Every region of every hierarchy is a candidate: a set of superpixels, so its mask is one table
lookup on the superpixel map and its area and box come from the superpixels without a mask.

Region features are histograms made with one `bincount` per image; the grouping loop runs once per
merge (a few hundred per hierarchy) with vectorised similarity updates, never per pixel.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from skimage.segmentation import felzenszwalb

from liid_cli.proposals.region_features import (
    COLOUR_BINS,
    COLOUR_SPACES,
    TEXTURE_BINS,
    histograms,
    normalised,
    quantised,
    texture_bins,
)
from liid_cli.proposals.superpixels import SuperpixelRegions, superpixel_sizes_and_boxes

SIMILARITIES = ("colour", "texture", "size", "fill")


@dataclass(frozen=True)
class Strategy:
    """One diversification: colour space, Felzenszwalb scale and the similarities summed."""

    colour_space: str
    scale: float
    similarities: tuple[str, ...]


def _adjacent_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (a, b) pairs, a < b, of 4-connected neighbouring superpixels; boundary lengths."""
    n = int(labels.max()) + 1
    codes = []
    for first, second in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        differ = first != second
        low = np.minimum(first[differ], second[differ]).astype(np.int64)
        high = np.maximum(first[differ], second[differ]).astype(np.int64)
        codes.append(low * n + high)
    unique, counts = np.unique(np.concatenate(codes), return_counts=True)
    return np.stack([unique // n, unique % n], axis=1), counts


class _Grouping:
    """Region features of one hierarchy; regions 0..n-1 are superpixels, later ones are merges."""

    def __init__(
        self,
        labels: np.ndarray,
        colour_hist: np.ndarray,
        texture_hist: np.ndarray,
        similarities: tuple[str, ...],
    ) -> None:
        n = colour_hist.shape[0]
        capacity = 2 * n - 1
        self.image_area = float(labels.size)
        self.similarities = similarities
        self.sizes = np.zeros(capacity)
        self.boxes = np.zeros((capacity, 4))
        self.sizes[:n], self.boxes[:n] = superpixel_sizes_and_boxes(labels, n)
        self.colour = np.zeros((capacity, colour_hist.shape[1]))
        self.colour[:n] = normalised(colour_hist)
        self.texture = np.zeros((capacity, texture_hist.shape[1]))
        self.texture[:n] = normalised(texture_hist)
        self.count = n

    def similarity(self, first: np.ndarray | int, second: np.ndarray) -> np.ndarray:
        """Mean of the enabled similarities (each in [0, 1]) of the pairs (first, second[i])."""
        total = np.zeros(len(second))
        if "colour" in self.similarities:
            total += np.minimum(self.colour[first], self.colour[second]).sum(axis=1)
        if "texture" in self.similarities:
            total += np.minimum(self.texture[first], self.texture[second]).sum(axis=1)
        joint = self.sizes[first] + self.sizes[second]
        if "size" in self.similarities:
            total += 1.0 - joint / self.image_area
        if "fill" in self.similarities:
            lo = np.minimum(self.boxes[first, :2], self.boxes[second, :2])
            hi = np.maximum(self.boxes[first, 2:], self.boxes[second, 2:])
            total += 1.0 - (np.prod(hi - lo, axis=1) - joint) / self.image_area
        return total / len(self.similarities)

    def appearance(self, first: int, second: np.ndarray) -> np.ndarray:
        """Texture (and colour, when the strategy uses it) histogram intersection, in [0, 1]."""
        total = np.minimum(self.texture[first], self.texture[second]).sum(axis=1)
        if "colour" in self.similarities:
            total = (total + np.minimum(self.colour[first], self.colour[second]).sum(axis=1)) / 2
        return total

    def merge(self, a: int, b: int) -> int:
        new = self.count
        size = self.sizes[a] + self.sizes[b]
        self.sizes[new] = size
        self.colour[new] = (self.colour[a] * self.sizes[a] + self.colour[b] * self.sizes[b]) / size
        self.texture[new] = (
            self.texture[a] * self.sizes[a] + self.texture[b] * self.sizes[b]
        ) / size
        self.boxes[new, :2] = np.minimum(self.boxes[a, :2], self.boxes[b, :2])
        self.boxes[new, 2:] = np.maximum(self.boxes[a, 2:], self.boxes[b, 2:])
        self.count += 1
        return new


def group(
    labels: np.ndarray,
    colour_hist: np.ndarray,
    texture_hist: np.ndarray,
    similarities: tuple[str, ...],
    small_region_penalty: float,
) -> SuperpixelRegions:
    """Greedy grouping of the most similar neighbours until one region (per connected part) is left.

    Rank score (our choice; the paper's randomised hierarchy position ranks whole objects late):
    a region's boundary contrast when it is absorbed (appearance dissimilarity to its neighbours,
    weighted by shared boundary length), minus `small_region_penalty / sqrt(area)` because
    histograms of few pixels intersect poorly with anything, which inflates small regions' contrast.
    """
    grouping = _Grouping(labels, colour_hist, texture_hist, similarities)
    n = colour_hist.shape[0]
    boundary: list[dict[int, float]] = [{} for _ in range(2 * n - 1)]
    pairs, lengths = _adjacent_pairs(labels)
    for (a, b), length in zip(pairs.tolist(), lengths.tolist(), strict=True):
        boundary[a][b] = boundary[b][a] = float(length)
    heap: list[tuple[float, int, int]] = []
    if len(pairs):
        pair_similarity = grouping.similarity(pairs[:, 0], pairs[:, 1])
        heap = [
            (-s, a, b) for s, (a, b) in zip(pair_similarity.tolist(), pairs.tolist(), strict=True)
        ]
        heapq.heapify(heap)
    alive = np.zeros(2 * n - 1, dtype=bool)
    alive[:n] = True
    contrast = np.zeros(2 * n - 1)
    leaves: list[np.ndarray] = [np.array([i]) for i in range(n)]
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        for region in (a, b):
            contrast[region] = _boundary_contrast(grouping, region, boundary[region])
        new = grouping.merge(a, b)
        alive[[a, b]] = False
        alive[new] = True
        leaves.append(np.concatenate([leaves[a], leaves[b]]))
        around = _merged_boundary(boundary, a, b, new)
        if around:
            others = np.fromiter(around, dtype=np.int64, count=len(around))
            for s, other in zip(
                grouping.similarity(new, others).tolist(), others.tolist(), strict=True
            ):
                heapq.heappush(heap, (-s, other, new))
    count = grouping.count
    areas = grouping.sizes[:count].copy()
    return SuperpixelRegions(
        superpixels=labels,
        leaves=leaves,
        areas=areas,
        boxes=grouping.boxes[:count].copy(),
        scores=contrast[:count] - small_region_penalty / np.sqrt(np.maximum(areas, 1.0)),
        n_superpixels=n,
    )


def _merged_boundary(
    boundary: list[dict[int, float]], a: int, b: int, new: int
) -> dict[int, float]:
    """Give `new` the neighbours of a and b (boundary lengths summed) and retire a and b."""
    around = dict(boundary[a])
    for other, length in boundary[b].items():
        around[other] = around.get(other, 0.0) + length
    around.pop(a, None)
    around.pop(b, None)
    for other, length in around.items():
        boundary[other].pop(a, None)
        boundary[other].pop(b, None)
        boundary[other][new] = length
    boundary[new] = around
    boundary[a] = {}
    boundary[b] = {}
    return around


def _boundary_contrast(grouping: _Grouping, region: int, boundary: dict[int, float]) -> float:
    """Appearance dissimilarity to the neighbours, weighted by the length of the shared boundary."""
    if not boundary:
        return 0.0
    others = np.fromiter(boundary, dtype=np.int64, count=len(boundary))
    weights = np.fromiter(boundary.values(), dtype=np.float64, count=len(boundary))
    return float(np.dot(weights, 1.0 - grouping.appearance(region, others)) / weights.sum())


def selective_search(
    image: np.ndarray,
    strategies: list[Strategy],
    sigma: float,
    min_size_ratio: float,
    small_region_penalty: float,
) -> list[SuperpixelRegions]:
    """All hierarchies of `image` (uint8 RGB), one per strategy; the features of a colour space
    and the superpixels of a (colour space, scale) pair are computed once."""
    hierarchies = []
    converted: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    segmented: dict[tuple[str, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for strategy in strategies:
        if strategy.colour_space not in converted:
            values = COLOUR_SPACES[strategy.colour_space](image)
            converted[strategy.colour_space] = (
                values,
                quantised(values, COLOUR_BINS),
                texture_bins(values),
            )
        values, colour_bins, texture = converted[strategy.colour_space]
        key = (strategy.colour_space, strategy.scale)
        if key not in segmented:
            labels = felzenszwalb(
                values,
                scale=strategy.scale,
                sigma=sigma,
                min_size=max(int(strategy.scale * min_size_ratio), 1),
                channel_axis=-1,
            )
            n = int(labels.max()) + 1
            segmented[key] = (
                labels,
                histograms(colour_bins, labels, n, COLOUR_BINS),
                histograms(texture, labels, n, TEXTURE_BINS),
            )
        labels, colour_hist, texture_hist = segmented[key]
        hierarchies.append(
            group(labels, colour_hist, texture_hist, strategy.similarities, small_region_penalty)
        )
    return hierarchies
