"""Proposal building blocks on tiny arrays with known answers: grouping, filter, store, eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from liid_cli import masks
from liid_cli.errors import LiidError
from liid_cli.evaluation.proposals import box_iou, evaluate_proposals
from liid_cli.proposals.filtering import FilterSettings, MaskCandidates, RegionCandidates, select
from liid_cli.proposals.region_features import COLOUR_BINS, TEXTURE_BINS, histograms, quantised
from liid_cli.proposals.selective_search import Strategy, group, selective_search
from liid_cli.proposals.store import ImageProposals, open_proposals_file, write_proposals
from liid_cli.proposals.superpixels import SuperpixelRegions

ALL = ("colour", "texture", "size", "fill")


def _squares_image() -> tuple[np.ndarray, list[np.ndarray]]:
    """Two flat squares (red, blue) on a mildly noisy grey background, 64x64."""
    rng = np.random.default_rng(0)
    image = np.clip(128 + rng.normal(0, 4, (64, 64, 3)), 0, 255)
    first = np.zeros((64, 64), bool)
    first[8:28, 8:28] = True
    second = np.zeros((64, 64), bool)
    second[36:58, 30:60] = True
    image[first] = (220, 30, 30)
    image[second] = (30, 40, 210)
    return image.astype(np.uint8), [first, second]


def test_selective_search_finds_both_squares_in_its_top_proposals() -> None:
    image, objects = _squares_image()
    hierarchies = selective_search(
        image,
        [Strategy("hsv", 50, ALL), Strategy("lab", 50, ALL)],
        sigma=0.8,
        min_size_ratio=0.5,
        small_region_penalty=2.0,
    )
    kept, scores = select(
        RegionCandidates(hierarchies), FilterSettings(5, 0.9, 0.7, 0.001, 0.9), 64, 64
    )
    assert len(kept) <= 5 and np.all(np.diff(scores) <= 0)
    iou = masks.iou_matrix([masks.encode(o) for o in objects], masks.encode_many(kept))
    assert iou.max(axis=1).min() > 0.95


def test_grouping_merges_the_most_similar_neighbours_first() -> None:
    # three superpixels in a row: 0 and 1 share a colour, 2 differs; 0-1 must merge first
    labels = np.repeat(np.repeat(np.array([[0, 1, 2]]), 4, axis=1), 4, axis=0)
    values = np.zeros((4, 12, 3))
    values[:, 8:] = 0.9
    colour = histograms(quantised(values, COLOUR_BINS), labels, 3, COLOUR_BINS)
    texture = histograms(np.zeros((24, 4, 12), int), labels, 3, TEXTURE_BINS)
    regions = group(labels, colour, texture, ALL, small_region_penalty=0.0)
    assert [sorted(leaves.tolist()) for leaves in regions.leaves[3:]] == [[0, 1], [0, 1, 2]]
    assert regions.areas.tolist() == [16, 16, 16, 32, 48]
    assert regions.boxes[3].tolist() == [0, 0, 8, 4]
    assert np.array_equal(regions.mask(3), labels < 2)
    # {0, 1} is absorbed by a dissimilar neighbour, so it outranks 0, which was absorbed by its twin
    assert regions.scores[3] > regions.scores[0]


def test_histograms_count_each_channel_per_region() -> None:
    labels = np.array([[0, 0, 1]])
    values = np.array([[[0.0, 0.99], [0.5, 0.99], [1.0, 0.0]]])  # (1, 3, 2): two channels
    counts = histograms(quantised(values, 2), labels, 2, 2)
    assert counts.tolist() == [[1, 1, 0, 2], [0, 1, 1, 0]]


def _candidates() -> MaskCandidates:
    base = np.zeros((5, 20, 20), bool)
    base[0, 2:12, 2:12] = True  # 100 px, best score
    base[1, 2:12, 2:11] = True  # 90 px: IoU 0.9 with 0 -> kept (not > 0.9)
    base[2, 2:12, 2:12] = True  # exact duplicate of 0 -> dropped
    base[2, 12, 2] = True
    base[3, 0, 0] = True  # 1 px < 1% -> tiny, dropped
    base[4] = True  # whole image, dropped
    return MaskCandidates(base, np.array([0.9, 0.8, 0.7, 0.95, 0.99]))


def test_filter_drops_tiny_whole_image_and_near_duplicates_and_keeps_rank_order() -> None:
    kept, scores = select(_candidates(), FilterSettings(10, 0.9, 0.9, 0.01, 0.9), 20, 20)
    assert scores.tolist() == pytest.approx([0.9, 0.8])
    assert kept[0].sum() == 100 and kept[1].sum() == 90
    top_one, _ = select(_candidates(), FilterSettings(1, 0.9, 0.9, 0.01, 0.9), 20, 20)
    assert len(top_one) == 1
    nothing, none_scores = select(_candidates(), FilterSettings(10, 0.9, 0.9, 0.5, 0.9), 20, 20)
    assert nothing.shape == (0, 20, 20) and len(none_scores) == 0


def test_diversity_ranks_overlapping_candidates_after_distinct_ones() -> None:
    stack = np.zeros((3, 20, 20), bool)
    stack[0, 0:10, 0:10] = True  # best
    stack[1, 0:10, 0:8] = True  # IoU 0.8 with 0: deferred below the distinct one
    stack[2, 12:20, 12:20] = True  # distinct, lowest score
    candidates = MaskCandidates(stack, np.array([0.9, 0.8, 0.1]))
    _, scores = select(candidates, FilterSettings(3, 0.9, 0.7, 0.0, 1.0), 20, 20)
    assert scores.tolist() == pytest.approx([0.9, 0.1, 0.8])
    top_two, _ = select(candidates, FilterSettings(2, 0.9, 0.7, 0.0, 1.0), 20, 20)
    assert np.array_equal(top_two, stack[[0, 2]])


def test_superpixel_regions_from_leaves_give_areas_boxes_and_masks() -> None:
    superpixels = np.array([[0, 0, 1], [2, 2, 1]])
    regions = SuperpixelRegions.from_leaves(
        superpixels, [np.array([0, 1]), np.array([2])], np.array([1.0, 0.5])
    )
    assert regions.areas.tolist() == [4, 2]
    assert regions.boxes.tolist() == [[0, 0, 3, 2], [0, 1, 2, 2]]
    assert np.array_equal(regions.mask(0), np.array([[1, 1, 1], [0, 0, 1]], bool))


def test_store_round_trip_keeps_images_without_proposals(tmp_path: Path) -> None:
    stack = np.zeros((2, 6, 8), bool)
    stack[0, 1:3, 2:5] = True
    stack[1, 4:, :] = True
    first = ImageProposals.from_masks(3, stack, np.array([0.9, 0.4]))
    empty = ImageProposals.from_masks(4, np.zeros((0, 5, 5), bool), np.zeros(0))
    path = tmp_path / "p.h5"
    write_proposals(path, "abc", [first, empty])
    with open_proposals_file(path, "abc") as store:
        read = list(store)
        assert [p.image_id for p in read] == [3, 4]
        assert np.array_equal(read[0].masks(), stack)
        assert read[0].boxes.tolist() == [[2, 1, 5, 3], [0, 4, 8, 6]]
        assert len(store.get(4)) == 0 and store.get(4).masks().shape == (0, 5, 5)
    with pytest.raises(LiidError, match="another data set"), open_proposals_file(path, "xyz"):
        pass


def test_proposal_recall_and_abo_match_hand_computed_values() -> None:
    truth_a = np.zeros((10, 10), bool)
    truth_a[0:4, 0:4] = True  # 16 px
    truth_b = np.zeros((10, 10), bool)
    truth_b[5:10, 5:10] = True  # 25 px
    half_b = np.zeros((10, 10), bool)
    half_b[5:10, 5:9] = True  # IoU with b = 20 / 25 = 0.8
    proposals = ImageProposals.from_masks(1, np.stack([half_b, truth_a]), np.array([0.9, 0.1]))

    class Store:
        csr = type("Csr", (), {"offsets": np.array([0, 2])})()

        def __len__(self) -> int:
            return 1

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([proposals])

    truth = {
        "images": [{"id": 1, "height": 10, "width": 10}],
        "annotations": [
            {"image_id": 1, "segmentation": masks.encode(truth_a), "iscrowd": 0},
            {"image_id": 1, "segmentation": masks.encode(truth_b), "iscrowd": 0},
            {"image_id": 1, "segmentation": masks.encode(truth_b), "iscrowd": 1},
        ],
    }
    metrics = evaluate_proposals(Store(), truth)  # type: ignore[arg-type]
    assert metrics["num_ground_truth"] == 2
    one, two = metrics["per_count"]["1"], metrics["per_count"]["2"]
    assert one["mask_recall@0.5"] == 0.5 and one["mask_recall@0.7"] == 0.5
    assert one["mask_ABO"] == pytest.approx(0.4)
    assert two["mask_recall@0.7"] == 1.0 and two["mask_ABO"] == pytest.approx(0.9)
    assert two["box_ABO"] == pytest.approx(0.9)
    assert metrics["recall@0.5"] == 1.0
    # AR: b (IoU 0.8) passes 7 of the 10 thresholds 0.5:0.05:0.95, a (IoU 1) all of them.
    assert one["mask_AR"] == pytest.approx(0.35) and two["mask_AR"] == pytest.approx(0.85)
    assert metrics["AR"] == pytest.approx(0.85)


def test_box_iou_of_known_boxes() -> None:
    iou = box_iou(
        np.array([[0, 0, 2, 2]], float), np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], float)
    )
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0, 0.0])
