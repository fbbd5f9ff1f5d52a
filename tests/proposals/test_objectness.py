"""Ranking cues of selective-search regions: fill and strategy agreement on known regions."""

from __future__ import annotations

import numpy as np
import pytest

from liid_cli.proposals.filtering import RegionCandidates
from liid_cli.proposals.objectness import add_cues, fill, strategy_agreement
from liid_cli.proposals.superpixels import SuperpixelRegions


def test_fill_is_the_share_of_the_box_a_region_covers() -> None:
    areas = np.array([100.0, 50.0, 10.0])
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5]], dtype=float)
    assert fill(areas, boxes).tolist() == [1.0, 0.5, 10.0]  # an empty box counts as one pixel


def _hierarchy(superpixels: np.ndarray, leaves: list[list[int]]) -> SuperpixelRegions:
    return SuperpixelRegions.from_leaves(
        superpixels, [np.array(ids) for ids in leaves], np.zeros(len(leaves))
    )


def test_a_region_counts_the_other_strategies_that_form_it() -> None:
    # three superpixel maps of a 64x64 image; the square [16:48, 16:48] is a region of the first
    # two (from different superpixels), the third only forms its left half
    square = np.zeros((64, 64), bool)
    square[16:48, 16:48] = True
    first = np.where(square, 1, 0)
    second = np.zeros((64, 64), int)
    second[:, 32:] = 1
    second[square] = 2 + (np.indices((64, 64))[0][square] >= 32)  # the square as two superpixels
    third = np.zeros((64, 64), int)
    third[16:48, 16:32] = 1
    hierarchies = [
        _hierarchy(first, [[0], [1]]),  # background, square
        _hierarchy(second, [[0], [1], [2, 3], [0, 1]]),  # left, right, square, background
        _hierarchy(third, [[0], [1]]),  # all but the half square, half square
    ]
    candidates = RegionCandidates(hierarchies)
    every = np.ones(len(candidates.areas), bool)
    agreement = strategy_agreement(hierarchies, every, 0.7)
    # square of 1 and of 2 agree; backgrounds of 1 and 2 agree (and the third's background covers
    # 3/4 + 1/8 of the image: IoU with the first's background 0.875/1.0 > 0.7)
    assert agreement.tolist() == [2, 1, 0, 0, 1, 2, 2, 0]
    # a region left out of the comparison gets 0 and counts for no other region
    without_first_square = every.copy()
    without_first_square[1] = False
    partial = strategy_agreement(hierarchies, without_first_square, 0.7)
    assert partial[1] == 0 and partial[4] == 0


def test_cues_add_to_the_rank_scores_only_with_their_weights() -> None:
    superpixels = np.zeros((8, 8), int)
    superpixels[2:6, 2:6] = 1
    hierarchies = [_hierarchy(superpixels, [[0], [1]]), _hierarchy(superpixels, [[1]])]
    candidates = RegionCandidates(hierarchies)
    add_cues(candidates, 64.0, agreement_weight=0.0, agreement_iou=0.7, fill_weight=0.0,
             area_range=(0.0, 1.0))
    assert candidates.scores.tolist() == [0.0, 0.0, 0.0]
    add_cues(candidates, 64.0, agreement_weight=0.5, agreement_iou=0.7, fill_weight=0.1,
             area_range=(0.0, 0.5))  # the 48-px ring is over half the image: not compared
    ring_fill, square_fill = 48 / 64, 1.0
    assert candidates.scores.tolist() == pytest.approx(
        [0.1 * ring_fill, 0.1 * square_fill + 0.5, 0.1 * square_fill + 0.5]
    )
