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
from liid_cli.h5store import write_csr
from liid_cli.log import track
from liid_cli.models.cam import CamClassifier, normalised_cams
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
            classes = [k - 1 for k in index.labels(image)]
            tensor = cam_input(
                rgb, model.trunk.stride, settings["input_size"], settings["cam_scale"],
                settings["keep_aspect"],
            ).to(device)
            logits, cams = normalised_cams(
                model, tensor, classes, scoring_size(rgb.shape[:2], settings["score_side"]),
                settings["cam_flip_average"],
            )
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
