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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import color
from skimage.segmentation import felzenszwalb

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8
SIMILARITIES = ("colour", "texture", "size", "fill")


def _hsv(image: np.ndarray) -> np.ndarray:
    return color.rgb2hsv(image)


def _lab(image: np.ndarray) -> np.ndarray:
    lab = color.rgb2lab(image)
    return np.clip((lab + [0.0, 128.0, 128.0]) / [100.0, 255.0, 255.0], 0.0, 1.0)


def _rgb(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0


def _rgi(image: np.ndarray) -> np.ndarray:
    """Normalised r, g plus intensity: the paper's rgI space."""
    rgb = image.astype(np.float64)
    total = rgb.sum(axis=2, keepdims=True) + 1e-6
    return np.concatenate([rgb[..., :2] / total, rgb.mean(axis=2, keepdims=True) / 255.0], axis=2)


# Every colour space maps uint8 RGB to float channels in [0, 1].
COLOUR_SPACES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hsv": _hsv,
    "lab": _lab,
    "rgb": _rgb,
    "rgi": _rgi,
}


@dataclass(frozen=True)
class Strategy:
    """One diversification: colour space, Felzenszwalb scale and the similarities summed."""

    colour_space: str
    scale: float
    similarities: tuple[str, ...]


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
        sizes, boxes = _superpixel_sizes_and_boxes(superpixels, n)
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


def _superpixel_sizes_and_boxes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count (n,) and box (n, 4) xyxy of each superpixel id 0..n-1 (zeros when absent)."""
    sizes = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    boxes = np.zeros((n, 4))
    for superpixel, found in enumerate(ndimage.find_objects(labels + 1, max_label=n)):
        if found is not None:
            rows, cols = found
            boxes[superpixel] = (cols.start, rows.start, cols.stop, rows.stop)
    return sizes, boxes


def _quantised(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each value in [0, 1]: (H, W, C) values -> (C, H, W) int."""
    return np.minimum((np.moveaxis(values, 2, 0) * bins).astype(np.int64), bins - 1)


def _histograms(quantised: np.ndarray, labels: np.ndarray, n_regions: int, bins: int) -> np.ndarray:
    """Per-region histograms of each channel of bin indices (C, H, W) -> (n, C * bins)."""
    base = labels.ravel().astype(np.int64) * bins
    return np.concatenate(
        [
            np.bincount(base + channel.ravel(), minlength=n_regions * bins).reshape(n_regions, bins)
            for channel in quantised
        ],
        axis=1,
    ).astype(np.float64)


def _texture_bins(values: np.ndarray) -> np.ndarray:
    """Gaussian-derivative responses (sigma 1) in 8 oriented half-directions per channel, each
    scaled to [0, 1] by its maximum and quantised: (8 C, H, W) bin indices."""
    responses = []
    for channel in range(values.shape[2]):
        plane = values[..., channel].astype(np.float32)
        dy = ndimage.gaussian_filter(plane, 1.0, order=(1, 0))
        dx = ndimage.gaussian_filter(plane, 1.0, order=(0, 1))
        for angle in np.arange(TEXTURE_ORIENTATIONS // 2) * np.pi / (TEXTURE_ORIENTATIONS // 2):
            directional = np.float32(np.cos(angle)) * dx + np.float32(np.sin(angle)) * dy
            for response in (np.maximum(directional, 0.0), np.maximum(-directional, 0.0)):
                peak = max(float(response.max()), 1e-12)
                responses.append(
                    np.minimum(
                        (response * (TEXTURE_BINS / peak)).astype(np.int64), TEXTURE_BINS - 1
                    )
                )
    return np.stack(responses)


def _normalised(histograms: np.ndarray) -> np.ndarray:
    return histograms / np.maximum(histograms.sum(axis=1, keepdims=True), 1e-12)


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
        self.sizes[:n], self.boxes[:n] = _superpixel_sizes_and_boxes(labels, n)
        self.colour = np.zeros((capacity, colour_hist.shape[1]))
        self.colour[:n] = _normalised(colour_hist)
        self.texture = np.zeros((capacity, texture_hist.shape[1]))
        self.texture[:n] = _normalised(texture_hist)
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
                _quantised(values, COLOUR_BINS),
                _texture_bins(values),
            )
        values, colour_bins, texture_bins = converted[strategy.colour_space]
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
                _histograms(colour_bins, labels, n, COLOUR_BINS),
                _histograms(texture_bins, labels, n, TEXTURE_BINS),
            )
        labels, colour_hist, texture_hist = segmented[key]
        hierarchies.append(
            group(labels, colour_hist, texture_hist, strategy.similarities, small_region_penalty)
        )
    return hierarchies
