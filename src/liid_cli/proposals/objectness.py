"""Ranking cues for selective-search regions beyond boundary contrast.

Strategy agreement: a region that the hierarchies of several colour spaces and superpixel scales
all form is bounded by edges that do not depend on the strategy, as an object's outline is; a
region that only one strategy forms is more often an accident of its superpixels. A region counts
the other strategies that hold a region of mask IoU above `iou` with it.

Fill: the share of its box a region covers. Whole objects are compact; background between
objects and strips along them are not.

Masks are compared on a coarse grid (longer side `GRID_SIDE`), only between regions whose areas
could give that IoU (sorted by area, compared in blocks), so a few thousand regions cost well under
a second.
"""

from __future__ import annotations

import numpy as np
import torch

from liid_cli.proposals.filtering import RegionCandidates
from liid_cli.proposals.superpixels import SuperpixelRegions

GRID_SIDE = 64  # masks of regions >= 0.1% of a 500-px image still cover a few cells
BLOCK = 256


def fill(areas: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(C,) share of each region's (C, 4) xyxy box that its `areas` cover."""
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return areas / np.maximum(box_areas, 1.0)


def _grid_masks(hierarchy: SuperpixelRegions, regions: np.ndarray) -> torch.Tensor:
    """(len(regions), cells) float masks of `regions` on the coarse grid."""
    height, width = hierarchy.superpixels.shape
    scale = min(1.0, GRID_SIDE / max(height, width))
    rows = ((np.arange(max(1, round(height * scale))) + 0.5) / scale).astype(int)
    cols = ((np.arange(max(1, round(width * scale))) + 0.5) / scale).astype(int)
    cells = hierarchy.superpixels[np.ix_(rows, cols)].ravel()
    leaves = [hierarchy.leaves[region] for region in regions]
    membership = np.zeros((len(regions), hierarchy.n_superpixels), dtype=np.float32)
    membership[np.repeat(np.arange(len(leaves)), [len(ids) for ids in leaves]),
               np.concatenate(leaves) if leaves else np.zeros(0, int)] = 1.0
    return torch.from_numpy(membership[:, cells])


def strategy_agreement(
    hierarchies: list[SuperpixelRegions], candidates: np.ndarray, iou: float
) -> np.ndarray:
    """(C,) for each region of the concatenated hierarchies, the number of other hierarchies
    holding a region with grid-mask IoU > `iou`; only regions where `candidates` is True are
    compared (the rest get 0)."""
    starts = np.cumsum([0] + [len(h.areas) for h in hierarchies])
    owner = np.repeat(np.arange(len(hierarchies)), np.diff(starts))
    chosen = np.flatnonzero(candidates)
    agreement = np.zeros(len(candidates))
    if not len(chosen):
        return agreement
    masks = torch.cat([
        _grid_masks(h, chosen[owner[chosen] == k] - starts[k]) for k, h in enumerate(hierarchies)
    ])
    strategy = torch.from_numpy(owner[chosen])  # the order of `masks`: by hierarchy, as `chosen`
    areas = masks.sum(dim=1)
    order = torch.argsort(areas)
    sorted_areas = areas[order]
    one_hot = torch.nn.functional.one_hot(strategy, len(hierarchies)).float()
    found = torch.zeros((len(chosen), len(hierarchies)), dtype=torch.bool)
    for start in range(0, len(order), BLOCK):
        stop = min(start + BLOCK, len(order))
        rows = order[start:stop]
        # IoU > iou needs the smaller area above iou times the larger one
        low = int(torch.searchsorted(sorted_areas, sorted_areas[start] * iou))
        high = int(torch.searchsorted(sorted_areas, sorted_areas[stop - 1] / iou, right=True))
        cols = order[low:high]
        inter = masks[rows] @ masks[cols].T
        union = areas[rows, None] + areas[None, cols] - inter
        match = (inter > iou * union).float()
        found[rows] |= (match @ one_hot[cols]) > 0  # which strategies hold a match
    found[torch.arange(len(chosen)), strategy] = False
    agreement[chosen] = found.sum(dim=1).numpy()
    return agreement


def add_cues(
    candidates: RegionCandidates,
    image_area: float,
    *,
    agreement_weight: float,
    agreement_iou: float,
    fill_weight: float,
    area_range: tuple[float, float],
) -> None:
    """Add the weighted cues to the candidates' rank scores; only regions whose area (a share of
    `image_area`) lies in `area_range`, those the filter may keep, are compared for agreement."""
    if fill_weight:
        candidates.scores += fill_weight * fill(candidates.areas, candidates.boxes)
    if agreement_weight:
        low, high = area_range
        compared = (candidates.areas >= low * image_area) & (candidates.areas <= high * image_area)
        candidates.scores += agreement_weight * strategy_agreement(
            candidates.hierarchies, compared, agreement_iou
        )
