"""Every proposal of a data set scored by a trained CAM classifier, into `cam_scores.h5`.

Per proposal and labelled class: the CAM's mean + max inside its box and inside its mask, how well
its mask matches the CAM (agreement), and the classifier's own sigmoid on the crop of its box
(crop score). The CAM scores say where a class is; the crop score says whether the box holds a
whole object of it: a part or a patch of background around an object lies inside the lit region
too, but its crop is less like the photos the classifier learnt the class from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from liid_cli import artifacts
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256
from liid_cli.h5store import CsrFile, write_csr
from liid_cli.log import track
from liid_cli.models.cam import CamClassifier, class_cams, upsampled_cams
from liid_cli.models.cam_scoring import cam_input, heat_map, proposal_scores, scoring_size
from liid_cli.models.crop_embedding import embed_boxes
from liid_cli.proposals.store import open_proposals, proposals_path


def crop_scores(
    model: CamClassifier, rgb: np.ndarray, boxes: np.ndarray, classes: list[int], side: int,
    num_classes: int, device: str,
) -> np.ndarray:
    """(M, K) sigmoid of the classifier on each box's crop (squared to `side`), for `classes`."""
    scores = np.zeros((len(boxes), num_classes), dtype=np.float32)
    if not len(boxes) or not classes:
        return scores
    logits = torch.from_numpy(embed_boxes(model, rgb, boxes, side, device))
    scores[:, classes] = torch.sigmoid(logits[:, classes]).numpy()
    return scores


@torch.no_grad()
def score_proposals(
    model: CamClassifier,
    index: DatasetIndex,
    settings: dict[str, Any],
    *,
    run_dir: Path,
    index_path: Path,
    out_dir: Path,
    device: str,
) -> dict[str, Any]:
    """Write `<out_dir>/cam_scores.h5` for the proposals of `run_dir` (made from `index_path`),
    from train-cam's `settings`; return its metrics."""
    model.eval()
    num_classes = index.classes.num_classes
    images_by_id = {int(image["id"]): image for image in index.images}
    names = [artifacts.H5_CAM_BOX_SCORES, artifacts.H5_CAM_MASK_SCORES,
             artifacts.H5_CAM_MASK_AGREEMENT, artifacts.H5_CAM_CROP_SCORES]
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    counts, image_ids = [], []
    low_res_maps: list[np.ndarray] = []
    tagged: list[list[int]] = []
    correct_labels, saved = 0, 0
    tags, tags_present, blank = 0, 0, 0
    cams_dir = out_dir / artifacts.CAM_MAPS_DIR
    with open_proposals(run_dir, index_path) as store:
        missing = set(images_by_id) - {int(i) for i in store.image_ids}
        if missing:
            raise LiidError(
                f"{proposals_path(run_dir)}: no proposals for {len(missing)} images of "
                f"{index_path}; rerun `liid proposals --run {run_dir} --force`"
            )
        for proposals in track(store, "CAM scores", total=len(store)):
            image = images_by_id[proposals.image_id]
            rgb = read_rgb(index.image_path(image))
            classes = index.tagged_classes(image)
            tagged.append(classes)
            tensor = cam_input(
                rgb, model.trunk.stride, settings["input_size"], settings["cam_scale"],
                settings["keep_aspect"],
            ).to(device)
            logits, low_res = class_cams(model, tensor, classes, settings["cam_flip_average"])
            low_res_maps.append(low_res.cpu().numpy())
            cams = upsampled_cams(low_res, scoring_size(rgb.shape[:2], settings["score_side"]))
            truth = torch.from_numpy(index.tag_vector(image)).to(logits.device)
            correct_labels += int(((logits > 0).float() == truth).sum())
            tags += len(classes)
            tags_present += int((logits[classes] > 0).sum())
            blank += int((cams.flatten(1).amax(dim=1) <= 0).sum())
            scores = (
                *proposal_scores(cams, proposals.boxes, proposals.masks(), classes, num_classes),
                crop_scores(model, rgb, proposals.boxes, classes, settings["crop_side"],
                            num_classes, device),
            )
            for rows, column in zip(columns.values(), scores, strict=True):
                rows.append(column)
            counts.append(len(proposals))
            image_ids.append(proposals.image_id)
            if settings["save_cams"] and saved < settings["save_cams_max"]:
                cams_dir.mkdir(exist_ok=True)
                for cam, k in zip(cams.cpu().numpy(), classes, strict=True):
                    Image.fromarray(heat_map(rgb, cam)).save(
                        cams_dir / f"{image['name']}_{index.classes.names[k]}.png"
                    )
                saved += 1
    write_csr(
        out_dir / artifacts.CAM_SCORES_H5,
        schema=artifacts.SCHEMA_CAM_SCORES,
        fingerprint=file_sha256(index_path),
        image_ids=np.array(image_ids),
        counts=np.array(counts),
        rows={name: _stack(rows, num_classes) for name, rows in columns.items()},
        attrs={artifacts.H5_PROPOSALS_SHA_ATTR: file_sha256(proposals_path(run_dir))},
    )
    write_low_res_cams(out_dir / artifacts.CAM_LOW_RES_H5, file_sha256(index_path),
                       np.array(image_ids), low_res_maps, tagged)
    return {
        "proposals_scored": int(sum(counts)),
        "images": len(counts),
        "train_label_accuracy": correct_labels / max(1, len(counts) * num_classes),
        # An underfit classifier on long-tailed tags calls few of them present and leaves some
        # tagged classes' CAMs zero everywhere: their proposals then all score 0.
        "tags_called_present": tags_present / max(1, tags),
        "blank_cams": blank / max(1, tags),
    }


def _stack(rows: list[np.ndarray], num_classes: int) -> np.ndarray:
    return (
        np.concatenate(rows).astype(np.float32)
        if rows
        else np.zeros((0, num_classes), dtype=np.float32)
    )


def write_low_res_cams(
    path: Path, fingerprint: str, image_ids: np.ndarray, maps: list[np.ndarray],
    classes: list[list[int]],
) -> None:
    """One CSR file of every image's (len(classes), h, w) maps: a row per tagged class."""
    sizes = [m.shape[1] * m.shape[2] for m in maps]
    length = max(sizes, default=0)
    rows = [np.pad(m.reshape(len(m), size), ((0, 0), (0, length - size)))
            for m, size in zip(maps, sizes, strict=True)]
    write_csr(
        path,
        schema=artifacts.SCHEMA_CAM_LOW_RES,
        fingerprint=fingerprint,
        image_ids=image_ids,
        counts=np.array([len(m) for m in maps], dtype=np.int64),
        rows={
            artifacts.H5_CAM_MAPS: np.concatenate(rows or [np.zeros((0, 0))]).astype(np.float32),
            artifacts.H5_CAM_MAP_CLASSES: np.array([k for c in classes for k in c], np.int64),
        },
        per_image={artifacts.H5_CAM_MAP_SHAPES: np.array(
            [m.shape[1:] for m in maps], dtype=np.int64).reshape(-1, 2)},
    )


def read_low_res_cams(file: CsrFile, image_id: int, classes: list[int]) -> torch.Tensor:
    """(len(classes), h, w) the image's low-resolution maps of `classes`, as `write_low_res_cams`
    wrote them."""
    rows = file.rows_of(image_id)
    height, width = (int(n) for n in file.image_row(artifacts.H5_CAM_MAP_SHAPES, image_id))
    stored = list(file.rows(artifacts.H5_CAM_MAP_CLASSES, rows))
    missing = set(classes) - set(stored)
    if missing:
        raise LiidError(f"{file.handle.filename}: image {image_id} has no CAM of classes "
                        f"{sorted(missing)}; rerun `liid {file.made_by} --force`")
    maps = file.rows(artifacts.H5_CAM_MAPS, rows)[:, : height * width]
    return torch.from_numpy(maps[[stored.index(k) for k in classes]].reshape(-1, height, width))
