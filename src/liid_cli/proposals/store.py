"""Reading and writing `proposals.h5` (schema `liid.proposals/1`): the one way stages see proposals.

Layout (CSR, see h5store): `image_ids` (N,), `offsets` (N+1,), per image `image_sizes` int32 (N, 2)
= (height, width); per proposal row `boxes` float32 (M, 4) xyxy pixels, `masks_rle` ascii COCO RLE
counts, `scores` float32 (M,). Rows of an image are in rank order (best first; the filter's
diversity ranking may place a higher-scored proposal that overlaps a better one later); an image
with no proposals keeps zero rows.

Other stages read proposals with
```
with open_proposals(run_dir, index_path) as store:
    for proposals in store:            # ImageProposals, in file order
        proposals.boxes, proposals.masks()
    store.get(image_id)
```
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import artifacts, masks
from liid_cli.fileio import file_sha256
from liid_cli.h5store import CsrFile, open_csr, write_csr

MADE_BY = "proposals"


@dataclass(frozen=True)
class ImageProposals:
    """The ranked proposals of one image."""

    image_id: int
    height: int
    width: int
    boxes: np.ndarray  # float32 (M, 4) xyxy pixels
    masks_rle: tuple[str, ...]  # COCO RLE counts (compressed, ascii), size = (height, width)
    scores: np.ndarray  # float32 (M,)

    def __len__(self) -> int:
        return len(self.masks_rle)

    def rle(self, row: int) -> dict[str, Any]:
        """The COCO RLE of proposal `row` (pycocotools style, counts as str)."""
        return {"size": [self.height, self.width], "counts": self.masks_rle[row]}

    def rles(self) -> list[dict[str, Any]]:
        return [self.rle(row) for row in range(len(self))]

    def masks(self) -> np.ndarray:
        """All masks decoded, bool (M, H, W)."""
        if not self.masks_rle:
            return np.zeros((0, self.height, self.width), dtype=bool)
        return np.stack([masks.decode(self.rle(row)) for row in range(len(self))])

    @classmethod
    def from_masks(
        cls, image_id: int, mask_stack: np.ndarray, scores: np.ndarray
    ) -> ImageProposals:
        """Build from bool (M, H, W) masks and their scores (rows kept in the given order)."""
        height, width = mask_stack.shape[1:]
        rles = masks.encode_many(mask_stack)
        boxes = (
            np.stack([masks.box_xyxy(m) for m in mask_stack])
            if len(mask_stack)
            else np.zeros((0, 4))
        )
        return cls(
            image_id=int(image_id),
            height=int(height),
            width=int(width),
            boxes=boxes.astype(np.float32).reshape(-1, 4),
            masks_rle=tuple(rle["counts"] for rle in rles),
            scores=np.asarray(scores, dtype=np.float32).reshape(-1),
        )


def write_proposals(
    path: Path,
    fingerprint: str,
    proposals: Sequence[ImageProposals],
    attrs: dict[str, Any] | None = None,
) -> None:
    """Write `proposals` (one entry per image, in index order) atomically to `path`."""
    boxes = [p.boxes.reshape(-1, 4) for p in proposals]
    write_csr(
        path,
        schema=artifacts.SCHEMA_PROPOSALS,
        fingerprint=fingerprint,
        image_ids=np.array([p.image_id for p in proposals], dtype=np.int64),
        counts=np.array([len(p) for p in proposals], dtype=np.int64),
        rows={
            artifacts.H5_BOXES: np.concatenate(boxes).astype(np.float32)
            if boxes
            else np.zeros((0, 4), dtype=np.float32),
            artifacts.H5_MASKS_RLE: np.array(
                [c for p in proposals for c in p.masks_rle], dtype=object
            ),
            artifacts.H5_SCORES: np.concatenate([p.scores for p in proposals]).astype(np.float32)
            if proposals
            else np.zeros(0, dtype=np.float32),
        },
        per_image={
            artifacts.H5_IMAGE_SIZES: np.array(
                [[p.height, p.width] for p in proposals], dtype=np.int32
            ).reshape(-1, 2)
        },
        attrs=attrs,
    )


class ProposalStore:
    """An open proposals file: iterate for every image, or `get(image_id)` for one."""

    def __init__(self, csr: CsrFile) -> None:
        self.csr = csr
        self.image_ids: np.ndarray = csr.image_ids
        self.image_sizes: np.ndarray = csr.column(artifacts.H5_IMAGE_SIZES)
        self._position = {int(image_id): i for i, image_id in enumerate(self.image_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def attrs(self) -> Any:
        return self.csr.attrs

    def get(self, image_id: int) -> ImageProposals:
        rows = self.csr.rows_of(image_id)
        height, width = self.image_sizes[self._position[int(image_id)]]
        return ImageProposals(
            image_id=int(image_id),
            height=int(height),
            width=int(width),
            boxes=self.csr.rows(artifacts.H5_BOXES, rows).reshape(-1, 4),
            masks_rle=tuple(self.csr.handle[artifacts.H5_MASKS_RLE].asstr()[rows]),
            scores=self.csr.rows(artifacts.H5_SCORES, rows),
        )

    def __iter__(self) -> Iterator[ImageProposals]:
        boxes = self.csr.column(artifacts.H5_BOXES).reshape(-1, 4)
        rles = self.csr.handle[artifacts.H5_MASKS_RLE].asstr()[:]
        scores = self.csr.column(artifacts.H5_SCORES)
        offsets = self.csr.offsets
        for i, image_id in enumerate(self.image_ids):
            start, stop = int(offsets[i]), int(offsets[i + 1])
            height, width = self.image_sizes[i]
            yield ImageProposals(
                image_id=int(image_id),
                height=int(height),
                width=int(width),
                boxes=boxes[start:stop],
                masks_rle=tuple(rles[start:stop]),
                scores=scores[start:stop],
            )


def proposals_path(run_dir: Path) -> Path:
    return artifacts.stage_dir(run_dir, MADE_BY) / artifacts.PROPOSALS_H5


@contextmanager
def open_proposals_file(path: Path, fingerprint: str | None) -> Iterator[ProposalStore]:
    """Open a proposals file, refusing one of another schema or made from another data set."""
    with open_csr(path, artifacts.SCHEMA_PROPOSALS, fingerprint, MADE_BY) as csr:
        yield ProposalStore(csr)


@contextmanager
def open_proposals(run_dir: Path, index_path: Path) -> Iterator[ProposalStore]:
    """Open `<run>/proposals/proposals.h5`, checking it was made from the index at `index_path`."""
    with open_proposals_file(proposals_path(run_dir), file_sha256(index_path)) as store:
        yield store
