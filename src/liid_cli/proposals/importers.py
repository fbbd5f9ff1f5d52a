"""Importers for proposals made elsewhere: MCG `.mat` files, COCO-style RLE json, label PNGs.

- MCG (as released by its authors): one `<image>.mat` per image with `superpixels` (H, W, ids from
  1), `labels` (a cell array: the superpixel ids of each proposal) and optionally `scores`.
- RLE json: a list of {"image_id", "segmentation": COCO RLE, "score"?} (COCO results style, e.g.
  COB or SAM automatic masks) or a COCO instances document (its `annotations`).
- Label PNGs (the LIID repository's S4Net format): one `<image>.png` per image, pixel value i+1 =
  proposal i, 0 = no proposal.

Each importer returns candidates for the common filter; rank order without scores is kept by
giving proposal i the score 1 - i / M.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from liid_cli import masks
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json
from liid_cli.proposals.filtering import MaskCandidates
from liid_cli.proposals.superpixels import SuperpixelRegions

RleEntries = list[tuple[dict[str, Any], float | None]]


def rank_scores(count: int) -> np.ndarray:
    return 1.0 - np.arange(count, dtype=np.float64) / max(count, 1)


def per_image_file(folder: Path, image: dict[str, Any], suffix: str) -> Path:
    """`<folder>/<image file stem><suffix>`, or `<folder>/<image name><suffix>`."""
    for stem in (Path(image["file_name"]).stem, str(image["name"])):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise LiidError(
        f"{folder / (Path(image['file_name']).stem + suffix)}: no proposals for image "
        f"{image['name']!r}; each image needs its {suffix} file in {folder}"
    )


def _check_size(path: Path, found: tuple[int, ...], height: int, width: int) -> None:
    if tuple(found) != (height, width):
        raise LiidError(
            f"{path}: proposals are {found[0]}x{found[1]} (HxW) but the image is {height}x{width}; "
            "were they made for another data set?"
        )


def read_mcg(path: Path, height: int, width: int) -> SuperpixelRegions:
    """MCG proposals of one image as superpixel regions."""
    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError:
        raise LiidError(
            f"{path}: MATLAB v7.3 file; resave it with -v7 (scipy cannot read v7.3)"
        ) from None
    except (OSError, ValueError) as error:
        raise LiidError(f"{path}: not a readable .mat file ({error}); replace the file") from None
    if "superpixels" not in content or "labels" not in content:
        raise LiidError(
            f"{path}: expected MCG fields `superpixels` and `labels`; found {sorted(content)}"
        )
    superpixels = np.asarray(content["superpixels"]).astype(np.int64) - 1
    _check_size(path, superpixels.shape, height, width)
    labels = [
        np.asarray(entry).astype(np.int64).ravel() - 1 for entry in np.ravel(content["labels"])
    ]
    if "scores" in content:
        scores = np.asarray(content["scores"], dtype=np.float64).ravel()
    else:
        scores = rank_scores(len(labels))
    if len(scores) != len(labels):
        raise LiidError(f"{path}: {len(labels)} proposals but {len(scores)} scores; fix the file")
    return SuperpixelRegions.from_leaves(superpixels, labels, scores)


def read_label_png(path: Path, height: int, width: int) -> SuperpixelRegions:
    """Proposals of one image from a label PNG (value i+1 = proposal i)."""
    try:
        with Image.open(path) as image:
            label_map = np.asarray(image).astype(np.int64)
    except (UnidentifiedImageError, OSError) as error:
        raise LiidError(
            f"{path}: cannot decode the label PNG ({error}); replace the file"
        ) from None
    if label_map.ndim != 2:
        raise LiidError(f"{path}: expected a single-channel label PNG (value i+1 = proposal i)")
    _check_size(path, label_map.shape, height, width)
    count = int(label_map.max())
    return SuperpixelRegions.from_leaves(
        label_map, [np.array([i + 1]) for i in range(count)], rank_scores(count)
    )


def load_rle_json(path: Path, image_ids: Iterable[int]) -> dict[int, RleEntries]:
    """Proposals per image id from a COCO-style RLE json; refuses ids not in the data set."""
    document = read_json(path)
    entries = document.get("annotations") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise LiidError(
            f"{path}: expected a list of {{image_id, segmentation, score}} or a COCO document"
        )
    known = {int(i) for i in image_ids}
    grouped: dict[int, RleEntries] = {}
    unknown: set[int] = set()
    for entry in entries:
        try:
            image_id = int(entry["image_id"])
            rle = entry["segmentation"]
            rle["size"]
        except (KeyError, TypeError, ValueError):
            raise LiidError(
                f"{path}: every entry needs `image_id` and an RLE `segmentation` with `size`"
            ) from None
        if image_id not in known:
            unknown.add(image_id)
            continue
        grouped.setdefault(image_id, []).append((rle, entry.get("score")))
    if unknown:
        raise LiidError(
            f"{path}: proposals for {len(unknown)} image ids that are not in the data set index "
            f"(e.g. {min(unknown)}); were they made for another data set?"
        )
    return grouped


def rle_candidates(path: Path, entries: RleEntries, height: int, width: int) -> MaskCandidates:
    """The RLE proposals of one image as mask candidates."""
    decoded = []
    for rle, _ in entries:
        _check_size(path, tuple(int(v) for v in rle["size"]), height, width)
        decoded.append(masks.decode(rle))
    stack = np.stack(decoded) if decoded else np.zeros((0, height, width), dtype=bool)
    given = [score for _, score in entries]
    scores = (
        rank_scores(len(entries)) if any(s is None for s in given) else np.asarray(given, float)
    )
    return MaskCandidates(stack, scores)
