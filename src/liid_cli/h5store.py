"""Ragged per-image arrays in HDF5, CSR layout: rows offsets[i]:offsets[i+1] belong to image i.

Every file carries `schema` and `fingerprint` (of the data set index it was made from) attributes;
`open_csr` refuses a file of another schema or another data set, naming the stage to rerun.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.fileio import atomic_path

RLE_DTYPE = h5py.string_dtype(encoding="ascii")
MAX_NAMED_ROWS = 5  # rows named in a non-finite error


def write_csr(
    path: Path,
    *,
    schema: str,
    fingerprint: str,
    image_ids: np.ndarray,
    counts: np.ndarray,
    rows: Mapping[str, np.ndarray],
    per_image: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write one CSR file atomically. `rows` arrays have sum(counts) rows; `per_image` have N."""
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    # HDF5 is built in memory and written with one plain write: when the disk is full or a file
    # size limit is reached, HDF5 writing to disk itself cannot close the file (it retries its
    # metadata at every close and at exit, and the process ends in a segmentation fault).
    image = io.BytesIO()
    with h5py.File(image, "w") as handle:
        handle.attrs[artifacts.H5_SCHEMA_ATTR] = schema
        handle.attrs[artifacts.H5_FINGERPRINT_ATTR] = fingerprint
        for key, value in (attrs or {}).items():
            handle.attrs[key] = value
        handle.create_dataset(artifacts.H5_IMAGE_IDS, data=np.asarray(image_ids, dtype=np.int64))
        handle.create_dataset(artifacts.H5_OFFSETS, data=offsets)
        for name, array in rows.items():
            if len(array) != total:
                raise ValueError(f"{name}: {len(array)} rows, expected {total}")
            if array.dtype.kind in "OUS":
                handle.create_dataset(name, data=np.asarray(array, dtype=object), dtype=RLE_DTYPE)
            else:
                chunks = (min(max(total, 1), 4096), *array.shape[1:]) if total else None
                handle.create_dataset(name, data=array, chunks=chunks)
        for name, array in (per_image or {}).items():
            handle.create_dataset(name, data=array)
    with atomic_path(path) as tmp, tmp.open("wb") as out:
        out.write(image.getbuffer())


def refuse_non_finite(
    path: Path | str,
    name: str,
    block: np.ndarray,
    offsets: np.ndarray,
    image_ids: np.ndarray,
    made_by: str,
    start: int = 0,
) -> None:
    """The one check of numbers read from an artifact: NaN or inf in float rows `start:` of
    dataset `name` is an error naming the file, the dataset and the first rows with their images."""
    if block.dtype.kind != "f" or block.size == 0:
        return
    finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
    if finite.all():
        return
    bad = np.flatnonzero(~finite) + start
    shown = bad[:MAX_NAMED_ROWS]
    images = image_ids[np.searchsorted(offsets, shown, side="right") - 1]
    listed = ", ".join(f"{row} (image {image})" for row, image in zip(shown, images, strict=True))
    more = f" and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
    raise LiidError(
        f"{path}: NaN or inf in `{name}` at rows {listed}{more}; rerun `liid {made_by} --force`"
    )


class CsrFile:
    """Read access to an open CSR file; float rows read through it are checked for NaN and inf."""

    def __init__(self, handle: h5py.File, made_by: str) -> None:
        self.handle = handle
        self.made_by = made_by
        self.image_ids: np.ndarray = handle[artifacts.H5_IMAGE_IDS][:]
        self.offsets: np.ndarray = handle[artifacts.H5_OFFSETS][:]
        self._position = {int(image_id): i for i, image_id in enumerate(self.image_ids)}

    @property
    def num_rows(self) -> int:
        return int(self.offsets[-1])

    def rows_of(self, image_id: int) -> slice:
        """The row slice of one image (empty if the image has no rows)."""
        i = self._index_of(image_id)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def _index_of(self, image_id: int) -> int:
        i = self._position.get(int(image_id))
        if i is None:
            raise LiidError(f"{self.handle.filename}: image {image_id} is not in the file; rerun the stage")
        return i

    def read(self, name: str, image_id: int) -> np.ndarray:
        return self.rows(name, self.rows_of(image_id))

    def image_row(self, name: str, image_id: int) -> np.ndarray:
        """One image's row of a per-image dataset `name` (N rows, in image order)."""
        return self.handle[name][self._index_of(image_id)]

    def column(self, name: str) -> np.ndarray:
        return self.rows(name, slice(0, None))

    def rows(self, name: str, selection: slice) -> np.ndarray:
        """Rows `selection` (a slice of SOP rows) of dataset `name`, checked for NaN and inf."""
        if name not in self.handle:
            raise LiidError(
                f"{self.handle.filename}: no dataset `{name}` (written by an older liid); "
                f"rerun `liid {self.made_by} --force`"
            )
        block = self.handle[name][selection]
        refuse_non_finite(self.handle.filename, name, block, self.offsets, self.image_ids,
                          self.made_by, selection.start or 0)
        return block

    @property
    def attrs(self) -> Mapping[str, Any]:
        return self.handle.attrs


@contextmanager
def open_csr(path: Path, schema: str, fingerprint: str | None, made_by: str) -> Iterator[CsrFile]:
    """Open a CSR file, checking its schema and (if given) the data set fingerprint it was made from."""
    if not path.is_file():
        raise LiidError(f"missing {path}: run `liid {made_by}` first")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise LiidError(f"{path}: not a readable HDF5 file ({error}); rerun `liid {made_by} --force`") from None
    with handle:
        found = handle.attrs.get(artifacts.H5_SCHEMA_ATTR)
        if found != schema:
            raise LiidError(f"{path}: schema {found!r}, expected {schema!r}; rerun `liid {made_by} --force`")
        made_from = handle.attrs.get(artifacts.H5_FINGERPRINT_ATTR)
        if fingerprint is not None and made_from != fingerprint:
            raise LiidError(
                f"{path}: made from another data set (index fingerprint {str(made_from)[:12]}, "
                f"expected {fingerprint[:12]}); rerun `liid {made_by} --force` on this data set"
            )
        yield CsrFile(handle, made_by)
