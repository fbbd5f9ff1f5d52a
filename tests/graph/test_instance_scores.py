"""The scores export-coco ranks pseudo instances by, against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.graph.instance_scores import cam_factors, factored_scores, neighbour_scores
from liid_cli.h5store import open_csr, write_csr

P = np.array([0.9, 0.8, 0.5, 0.7], dtype=np.float32)
LABELS = np.array([1, 2, 0, 1])  # the third SOP is noise
PROPOSALS = np.array([0, 1, 2, 2])
AGREEMENT = np.array([[0.5, 0.0], [0.0, 0.25], [0.2, 0.4]], dtype=np.float32)
CROP = np.array([[0.8, 0.0], [0.0, 0.5], [0.1, 0.3]], dtype=np.float32)


def test_each_score_multiplies_what_it_names() -> None:
    assert np.allclose(factored_scores(P, LABELS, PROPOSALS, None, "p"), [0.9, 0.8, 0.0, 0.7])
    assert np.allclose(
        factored_scores(P, LABELS, PROPOSALS, AGREEMENT, "p_cam_agreement"),
        [0.9 * 0.5, 0.8 * 0.25, 0.0, 0.7 * 0.2],
    )
    assert np.allclose(
        factored_scores(P, LABELS, PROPOSALS, AGREEMENT * CROP, "crop_cam_agreement"),
        [0.5 * 0.8, 0.25 * 0.5, 0.0, 0.2 * 0.1],  # no p
    )
    assert np.allclose(
        factored_scores(P, LABELS, PROPOSALS, AGREEMENT * CROP, "p_crop_cam_agreement"),
        [0.9 * 0.5 * 0.8, 0.8 * 0.25 * 0.5, 0.0, 0.7 * 0.2 * 0.1],
    )


def test_the_neighbours_vote_counts_only_those_that_took_the_same_label() -> None:
    scores = np.array([0.4, 0.2, 0.0, 0.8], dtype=np.float32)
    neighbours = np.array([[3, 1], [0, -1], [0, 1], [0, 2]])
    voted = neighbour_scores(scores, LABELS, neighbours, 0.5)
    # SOP 0: its neighbour 3 took label 1 (0.8), neighbour 1 took label 2: mean 0.4
    assert np.allclose(voted, [0.5 * 0.4 + 0.5 * 0.4, 0.5 * 0.2, 0.0, 0.5 * 0.8 + 0.5 * 0.2])


def test_crop_scores_missing_from_an_older_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / artifacts.CAM_SCORES_H5
    write_csr(
        path, schema=artifacts.SCHEMA_CAM_SCORES, fingerprint="f", image_ids=np.array([1]),
        counts=np.array([3]), rows={artifacts.H5_CAM_MASK_AGREEMENT: AGREEMENT},
    )
    with open_csr(path, artifacts.SCHEMA_CAM_SCORES, "f", "train-cam") as cams:
        assert np.allclose(cam_factors(cams, "p_cam_agreement", slice(0, 3)), AGREEMENT)
        for score in ("crop_cam_agreement", "p_crop_cam_agreement"):
            with pytest.raises(LiidError, match="rerun `liid train-cam --force`"):
                cam_factors(cams, score, slice(0, 3))
