"""Instance training data: the images of a data set index with masks from any COCO instances json.

The json may be the exported pseudo labels or ground truth; its category ids must be the index's.
Images without a usable instance are left out of training (as torchvision's references do): a
weakly labelled image without pseudo masks would otherwise teach its objects to be background.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from liid_cli import masks
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json

Target = dict[str, torch.Tensor]


@dataclass(frozen=True)
class InstanceRecord:
    image_id: int
    path: Path
    height: int
    width: int
    labels: tuple[int, ...]  # internal class ids 1..K
    rles: tuple[dict[str, Any], ...]


def read_instances_document(path: Path) -> dict[str, Any]:
    """A COCO instances json with at least one annotation, or a one-line error."""
    document = read_json(path)
    if not isinstance(document, dict) or "annotations" not in document or "images" not in document:
        raise LiidError(f"{path}: not a COCO instances file (needs `images` and `annotations`)")
    if not document["annotations"]:
        raise LiidError(
            f"{path}: no annotations to train on; export pseudo labels first (`liid export-coco`) "
            "or pass --labels with a non-empty COCO instances json"
        )
    return document


def load_instance_records(index: DatasetIndex, labels_path: Path) -> list[InstanceRecord]:
    """One record per index image that has at least one non-crowd instance in `labels_path`."""
    document = read_instances_document(labels_path)
    classes = index.classes
    images = {int(image["id"]): image for image in index.images}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in document["annotations"]:
        if annotation.get("iscrowd", 0):
            continue
        category = int(annotation["category_id"])
        if category not in classes.category_ids:
            raise LiidError(
                f"{labels_path}: category_id {category} is not a class of {index.path} "
                f"(known: {list(classes.category_ids)}); use labels made for this data set"
            )
        by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    if not set(by_image) & set(images):
        raise LiidError(
            f"{labels_path}: no annotation refers to an image of {index.path}; "
            "are the labels and the index from the same data set and split?"
        )
    records = []
    for image_id, image_annotations in sorted(by_image.items()):
        image = images.get(image_id)
        if image is None:
            continue
        height, width = int(image["height"]), int(image["width"])
        rles = [masks.segmentation_rle(a["segmentation"], height, width) for a in image_annotations]
        nonempty = [i for i, rle in enumerate(rles) if mask_utils.area(rle) > 0]
        if not nonempty:
            continue
        records.append(
            InstanceRecord(
                image_id=image_id,
                path=index.image_path(image),
                height=height,
                width=width,
                labels=tuple(
                    classes.to_internal(int(image_annotations[i]["category_id"])) for i in nonempty
                ),
                rles=tuple(rles[i] for i in nonempty),
            )
        )
    if not records:
        raise LiidError(
            f"{labels_path}: every instance mask is empty; there is nothing to train on"
        )
    require_images_on_disk([record.path for record in records], index.path)
    return records


def require_images_on_disk(paths: list[Path], index_path: Path) -> None:
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise LiidError(
            f"{missing[0]}: image listed in {index_path} is missing on disk "
            f"({len(missing)} missing); "
            "restore the images or remake the index with `liid data ...`"
        )


def image_tensor(path: Path) -> torch.Tensor:
    """float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(read_rgb(path).copy()).permute(2, 0, 1).float().div_(255.0)


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes (right/bottom exclusive) of non-empty (N, H, W) masks."""
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    height, width = masks.shape[1:]
    y0 = rows.float().argmax(dim=1)
    y1 = height - rows.flip(1).float().argmax(dim=1)
    x0 = cols.float().argmax(dim=1)
    x1 = width - cols.flip(1).float().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).float()


class InstanceDataset(Dataset):
    """(image (3, H, W) float, target with boxes, labels, masks) with a random horizontal flip."""

    def __init__(self, records: list[InstanceRecord], flip_probability: float) -> None:
        self.records = records
        self.flip_probability = flip_probability

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, Target]:
        record = self.records[position]
        image = image_tensor(record.path)
        instance_masks = torch.from_numpy(np.stack([masks.decode(rle) for rle in record.rles]))
        if image.shape[1:] != instance_masks.shape[1:]:
            raise LiidError(
                f"{record.path}: image is {tuple(image.shape[1:])} but its masks are "
                f"{tuple(instance_masks.shape[1:])}; "
                "the labels were made for other images"
            )
        labels = torch.tensor(record.labels, dtype=torch.int64)
        if random.random() < self.flip_probability:
            image = image.flip(-1)
            instance_masks = instance_masks.flip(-1)
        target = {
            "boxes": boxes_from_masks(instance_masks),
            "labels": labels,
            "masks": instance_masks.to(torch.uint8),
        }
        return image, target


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """Detection batches are lists: images differ in size."""
    images, targets = zip(*batch)
    return list(images), list(targets)
