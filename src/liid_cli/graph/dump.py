"""Reading `dump.h5` for the cut: probabilities and label masks in memory, features streamed.

Features stay on disk as float16 and are read in row chunks (`FeatureStream`), so the cut's memory
does not grow with N x D; only the kNN backend decides what it keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.h5store import open_csr, refuse_non_finite

MADE_BY = "dump"


@dataclass(frozen=True)
class DumpData:
    """What the cut needs from the dump, except the features."""

    path: Path
    image_ids: np.ndarray  # (N,) int64
    offsets: np.ndarray  # (N+1,) int64
    sop_image: np.ndarray  # (M,) int64 row of each SOP's image
    probs: np.ndarray  # (M, K+1) float32, label-masked when asked for
    allowed: np.ndarray  # (M, K+1) bool: labels an SOP may take (all True without masking)
    image_labels: np.ndarray  # (N, K+1) bool, background column always True
    proposal_index: np.ndarray  # (M,) int32
    feature_dim: int
    features_name: str = artifacts.H5_FEATURES  # the dataset FeatureStream reads

    @property
    def num_sops(self) -> int:
        return len(self.sop_image)

    @property
    def num_labels(self) -> int:
        return self.probs.shape[1]


def read_dump(path: Path, fingerprint: str, num_classes: int, label_masking: bool) -> DumpData:
    """Read and check probabilities and labels; refuse non-finite rows, other schemas, other K."""
    with open_csr(path, artifacts.SCHEMA_DUMP, fingerprint, MADE_BY) as dump:
        handle = dump.handle
        missing = [
            name
            for name in (
                artifacts.H5_PROBS,
                artifacts.H5_FEATURES,
                artifacts.H5_LABELS,
                artifacts.H5_PROPOSAL_INDEX,
            )
            if name not in handle
        ]
        if missing:
            raise LiidError(f"{path}: missing datasets {missing}; rerun `liid {MADE_BY} --force`")
        probs = dump.column(artifacts.H5_PROBS).astype(np.float32, copy=False)
        image_labels = handle[artifacts.H5_LABELS][:]
        proposal_index = handle[artifacts.H5_PROPOSAL_INDEX][:].astype(np.int32, copy=False)
        features = handle[artifacts.H5_FEATURES]
        feature_dim = int(features.shape[1]) if features.ndim == 2 else -1
        offsets, image_ids = dump.offsets, dump.image_ids
        num_features = features.shape[0]
    expected = num_classes + 1
    if (
        probs.ndim != 2
        or probs.shape[1] != expected
        or image_labels.shape != (len(image_ids), expected)
    ):
        raise LiidError(
            f"{path}: probabilities have {probs.shape[-1]} columns and labels "
            f"{image_labels.shape}, but the data set has K={num_classes} classes "
            f"(K+1={expected} columns); rerun `liid {MADE_BY} --force` "
            "with the MIL model trained on this data set"
        )
    if feature_dim < 1 or num_features != len(probs):
        raise LiidError(
            f"{path}: features must be (M, D) aligned with probs; rerun `liid {MADE_BY} --force`"
        )
    labels = image_labels > 0.5
    labels[:, 0] = True
    sop_image = np.repeat(np.arange(len(image_ids)), np.diff(offsets))
    if label_masking:
        allowed = labels[sop_image]
        probs = probs * allowed
    else:
        allowed = np.ones_like(probs, dtype=bool)
    return DumpData(
        path=path,
        image_ids=image_ids,
        offsets=offsets,
        sop_image=sop_image,
        probs=probs,
        allowed=allowed,
        image_labels=labels,
        proposal_index=proposal_index,
        feature_dim=feature_dim,
    )


def crop_features_view(dump: DumpData) -> DumpData | None:
    """The dump seen through its crop embeddings (`liid dump` with crop_features), or None."""
    with h5py.File(dump.path, "r") as handle:
        if artifacts.H5_CROP_FEATURES not in handle:
            return None
        shape = handle[artifacts.H5_CROP_FEATURES].shape
    if len(shape) != 2 or shape[0] != dump.num_sops or shape[1] < 1:
        raise LiidError(
            f"{dump.path}: crop features must be (M, D) aligned with probs; "
            f"rerun `liid {MADE_BY} --force`"
        )
    return replace(dump, feature_dim=int(shape[1]), features_name=artifacts.H5_CROP_FEATURES)


class FeatureStream:
    """Row chunks of the float16 features, each checked for NaN/inf (refused, naming the rows)."""

    def __init__(self, dump: DumpData, chunk_rows: int = 16384) -> None:
        self.dump = dump
        self.chunk_rows = chunk_rows

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float16 block) over all rows, in order."""
        with h5py.File(self.dump.path, "r") as handle:
            features = handle[self.dump.features_name]
            for start in range(0, self.dump.num_sops, self.chunk_rows):
                block = features[start : start + self.chunk_rows]
                refuse_non_finite(
                    self.dump.path, self.dump.features_name, block, self.dump.offsets,
                    self.dump.image_ids, MADE_BY, start,
                )
                yield start, block
