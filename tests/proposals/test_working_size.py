"""Large photos: selective search at a bounded working size, masks back at full resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from liid_cli import masks
from liid_cli.config import load_stage_config
from liid_cli.proposals.store import ImageProposals
from liid_cli.proposals.working_size import full_size_proposals, upscale, working_image
from liid_cli.stages import proposals as stage


def test_working_image_bounds_the_longer_side_and_keeps_small_images() -> None:
    image = np.zeros((300, 450, 3), np.uint8)
    assert working_image(image, 450) is image
    small = working_image(image, 100)
    assert small.shape == (67, 100, 3) and small.dtype == np.uint8
    assert working_image(np.zeros((1000, 8, 3), np.uint8), 100).shape == (100, 1, 3)


def test_upscale_is_nearest_neighbour_with_aligned_centres() -> None:
    labels = np.arange(12).reshape(3, 4)
    assert np.array_equal(upscale(labels, 6, 8), np.kron(labels, np.ones((2, 2), int)))
    odd = upscale(labels, 7, 9)
    assert odd.shape == (7, 9) and odd[0, 0] == 0 and odd[-1, -1] == 11
    assert set(np.unique(odd)) == set(range(12))  # every source pixel still shows


def test_full_size_proposals_upscale_each_mask_and_its_box() -> None:
    small = np.zeros((2, 10, 15), bool)
    small[0, 2:5, 3:9] = True
    small[1, 6:10, 0:2] = True
    scores = np.array([0.9, 0.4])
    same, direct = full_size_proposals(7, small, scores, 10, 15), ImageProposals.from_masks(7, small, scores)
    assert same.masks_rle == direct.masks_rle and np.array_equal(same.boxes, direct.boxes)
    full = full_size_proposals(7, small, scores, 40, 60)
    assert (full.height, full.width, len(full)) == (40, 60, 2)
    assert np.array_equal(full.masks(), np.stack([upscale(m, 40, 60) for m in small]))
    assert full.boxes.tolist() == [[12, 8, 36, 20], [0, 24, 8, 40]]
    assert np.allclose(full.scores, scores)


def test_large_photo_is_segmented_at_the_working_size_with_full_size_masks(tmp_path: Path) -> None:
    height, width = 1000, 1500
    rng = np.random.default_rng(0)
    image = np.clip(128 + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
    objects = [np.zeros((height, width), bool) for _ in range(2)]
    objects[0][150:450, 200:650] = True
    objects[1][550:900, 800:1400] = True
    image[objects[0]] = (220, 30, 30)
    image[objects[1]] = (30, 40, 210)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    config = load_stage_config("proposals", stage.ProposalsConfig, profile="demo",
                               overrides=["selective_search.max_side=300"])
    task = stage.ImageTask({"id": 1}, path, None, [], None)
    found = stage.proposals_for_image(config, task)
    assert (found.height, found.width) == (height, width) and len(found) > 0
    iou = masks.iou_matrix([masks.encode(o) for o in objects], found.rles())
    assert iou.max(axis=1).min() > 0.9  # a working pixel is 5x5 photo pixels at the edges
