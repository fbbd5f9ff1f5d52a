"""Scores of the cut's labelled SOPs for export-coco: each SOP's own score and the knowledge
graph's vote, the scores of its kNN neighbours (in other images) that took the same label.

An object's crop looks like other objects of its class; a part or a patch of background that the
MIL network labelled with a class looks like parts and backgrounds, which the cut labels with
whatever class their own images have. Mixing in the neighbours' agreeing scores ranks the first
above the second (docs/design.md; measured in docs/results.md).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.h5store import CsrFile

# The score of a labelled SOP: p[label] (the MIL network's probability), p[label] x how well its
# mask matches its class's CAM, or that agreement x the CAM classifier's score of its box's crop
# (no p: the MIL network's p is near 1 for whole objects and their parts alike), or all three.
ScoreName = Literal["p", "p_cam_agreement", "crop_cam_agreement", "p_crop_cam_agreement"]


class ScoreFactors(NamedTuple):
    """What a score multiplies: p[label], the CAM agreement, the crop score."""

    p: bool
    cam_agreement: bool
    crop: bool


SCORE_FACTORS: dict[str, ScoreFactors] = {
    "p": ScoreFactors(p=True, cam_agreement=False, crop=False),
    "p_cam_agreement": ScoreFactors(p=True, cam_agreement=True, crop=False),
    "crop_cam_agreement": ScoreFactors(p=False, cam_agreement=True, crop=True),
    "p_crop_cam_agreement": ScoreFactors(p=True, cam_agreement=True, crop=True),
}


def cam_factors(cam_scores: CsrFile, score: ScoreName, rows: slice) -> np.ndarray | None:
    """(P, K) what the score multiplies p (or 1) by for one image's proposals (cam_scores.h5
    `rows`); None for the score p, which uses no CAM."""
    factors = SCORE_FACTORS[score]
    if not factors.cam_agreement:
        return None
    table = cam_scores.rows(artifacts.H5_CAM_MASK_AGREEMENT, rows)
    if factors.crop:
        table = table * cam_scores.rows(artifacts.H5_CAM_CROP_SCORES, rows)
    return table


def factored_scores(
    p: np.ndarray, labels: np.ndarray, proposal_index: np.ndarray, factors: np.ndarray | None,
    score: ScoreName,
) -> np.ndarray:
    """Each SOP's score from its p[label] and its image's (P, K) `factors`; 0 for noise."""
    own = p if SCORE_FACTORS[score].p else np.ones_like(p)
    if factors is None:
        return (own * (labels > 0)).astype(np.float32)
    return own * factors[proposal_index, np.maximum(labels - 1, 0)] * (labels > 0)


def own_scores(
    cut: CsrFile, labels: np.ndarray, proposal_index: np.ndarray, cam_scores: CsrFile | None,
    score: ScoreName,
) -> np.ndarray:
    """(M,) every SOP's score (`score`), in cut.h5 row order (`labels` and `proposal_index` its
    columns); `cam_scores` is train-cam's file, needed unless the score is p."""
    p = cut.column(artifacts.H5_SCORES).astype(np.float32)
    if cam_scores is None:
        return factored_scores(p, labels, proposal_index, None, score)
    result = np.zeros_like(p)
    for image_id in cut.image_ids:
        rows = cut.rows_of(int(image_id))
        if rows.stop == rows.start:
            continue
        factors = cam_factors(cam_scores, score, cam_scores.rows_of(int(image_id)))
        check_proposal_rows(cut, int(image_id), proposal_index[rows], len(factors))
        result[rows] = factored_scores(p[rows], labels[rows], proposal_index[rows], factors, score)
    return result


def neighbour_scores(
    scores: np.ndarray, labels: np.ndarray, neighbours: np.ndarray, weight: float
) -> np.ndarray:
    """(1 - weight) x own score + weight x the mean over an SOP's k graph neighbours of their
    scores where they took its label (0 for the others and for missing neighbours)."""
    if weight == 0.0 or neighbours.shape[1] == 0:
        return scores
    present = neighbours >= 0
    columns = np.where(present, neighbours, 0)
    agreeing = present & (labels[columns] == labels[:, None]) & (labels[:, None] > 0)
    mean = np.where(agreeing, scores[columns], 0.0).sum(axis=1) / neighbours.shape[1]
    return ((1.0 - weight) * scores + weight * mean).astype(np.float32)


def check_proposal_rows(cut: CsrFile, image_id: int, proposal_index: np.ndarray, count: int) -> None:
    if len(proposal_index) and proposal_index.max() >= count:
        raise LiidError(
            f"{cut.handle.filename}: image {image_id} refers to proposal "
            f"{proposal_index.max()} but proposals.h5 has {count}; "
            "rerun `liid cut --force` after the proposals changed"
        )


def cut_neighbours(cut: CsrFile, num_sops: int) -> np.ndarray:
    """The cut's kNN table; none in a cut.h5 written before it was kept."""
    if artifacts.H5_NEIGHBOURS not in cut.handle:
        return np.zeros((num_sops, 0), dtype=np.int32)
    return cut.column(artifacts.H5_NEIGHBOURS)
