"""Scores of the cut's labelled SOPs for export-coco: each SOP's own score and the knowledge
graph's vote, the scores of its kNN neighbours (in other images) that took the same label.

An object's crop looks like other objects of its class; a part or a patch of background that the
MIL network labelled with a class looks like parts and backgrounds, which the cut labels with
whatever class their own images have. Mixing in the neighbours' agreeing scores ranks the first
above the second (docs/design.md; measured in docs/results.md).
"""

from __future__ import annotations

import numpy as np

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.h5store import CsrFile


def agreement_scores(
    scores: np.ndarray, labels: np.ndarray, proposal_index: np.ndarray, agreement: np.ndarray
) -> np.ndarray:
    """p[label] times how well each SOP's mask matches its class's CAM (`agreement`: (P, K) for
    the image's proposals, cam_scores.h5); 0 for noise."""
    return scores * agreement[proposal_index, np.maximum(labels - 1, 0)] * (labels > 0)


def own_scores(
    cut: CsrFile, labels: np.ndarray, proposal_index: np.ndarray, agreement: CsrFile | None
) -> np.ndarray:
    """(M,) every SOP's score, in cut.h5 row order (`labels` and `proposal_index` its columns):
    p[label], times its agreement with its class's CAM when `agreement` is given; 0 for noise."""
    scores = cut.column(artifacts.H5_SCORES).astype(np.float32) * (labels > 0)
    if agreement is None:
        return scores
    for image_id in cut.image_ids:
        rows = cut.rows_of(int(image_id))
        if rows.stop == rows.start:
            continue
        table = agreement.read(artifacts.H5_CAM_MASK_AGREEMENT, int(image_id))
        check_proposal_rows(cut, int(image_id), proposal_index[rows], len(table))
        scores[rows] = agreement_scores(scores[rows], labels[rows], proposal_index[rows], table)
    return scores


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
