"""Semantic training data: images with label maps from palette PNGs or rendered from COCO instances.

A folder holds `<image name>.png` palette PNGs with internal ids (0 = background, 1..K, 255 =
ignore), as `liid export-coco` writes them. A COCO instances json (ground truth, or the pseudo
instances) is painted into label maps on the fly: overlaps of different classes and crowd regions
become 255.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from liid_cli.data.index import DatasetIndex
from liid_cli.downstream.instance_data import image_tensor, require_images_on_disk
from liid_cli.errors import LiidError
from liid_cli.evaluation.semantic import ground_truth_label_maps
from liid_cli.fileio import read_json
from liid_cli.palette import IGNORE_LABEL, read_label_png


@dataclass(frozen=True)
class SemanticRecord:
    name: str
    image_id: int
    path: Path
    label_png: Path | None  # a palette PNG, or None: paint `document` instead
    document: dict[str, Any] | None  # a one-image COCO instances document


def load_semantic_records(
    index: DatasetIndex, labels: Path, *, annotated_only: bool
) -> list[SemanticRecord]:
    """Records of the index's images; `labels` is a folder of palette PNGs or a COCO instances json.

    With `annotated_only`, images the json gives no instance are left out (training on pseudo
    labels); ground truth for validation keeps every image.
    """
    if labels.is_dir():
        records = [
            SemanticRecord(
                image["name"],
                int(image["id"]),
                index.image_path(image),
                labels / f"{image['name']}.png",
                None,
            )
            for image in index.images
        ]
        missing = [
            r.label_png for r in records if r.label_png is not None and not r.label_png.is_file()
        ]
        if missing:
            raise LiidError(
                f"missing {missing[0]}: {labels} lacks the label maps of {len(missing)} image(s) "
                f"of "
                f"{index.path}; rerun `liid export-coco` or pass the folder made for this data set"
            )
    else:
        records = _records_from_json(index, labels, annotated_only)
    if not records:
        raise LiidError(f"{labels}: no image of {index.path} has a label map; nothing to train on")
    require_images_on_disk([record.path for record in records], index.path)
    return records


def _records_from_json(
    index: DatasetIndex, path: Path, annotated_only: bool
) -> list[SemanticRecord]:
    document = read_json(path)
    if not isinstance(document, dict) or "annotations" not in document:
        raise LiidError(f"{path}: neither a folder of palette PNGs nor a COCO instances json")
    if not document["annotations"]:
        raise LiidError(f"{path}: no annotations; pass labels with at least one instance")
    known = set(index.classes.category_ids)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in document["annotations"]:
        if int(annotation["category_id"]) not in known:
            raise LiidError(
                f"{path}: category_id {annotation['category_id']} is not a class of {index.path}; "
                "use labels made for this data set"
            )
        by_image.setdefault(int(annotation["image_id"]), []).append(annotation)
    records = []
    for image in index.images:
        annotations = by_image.get(int(image["id"]), [])
        if annotated_only and not annotations:
            continue
        single = {
            "images": [{key: image[key] for key in ("id", "width", "height")}],
            "annotations": annotations,
        }
        records.append(
            SemanticRecord(image["name"], int(image["id"]), index.image_path(image), None, single)
        )
    return records


def read_label_map(record: SemanticRecord, index: DatasetIndex) -> np.ndarray:
    """uint8 (H, W) label map of a record, checked against the class count."""
    classes = index.classes
    if record.label_png is not None:
        label_map = read_label_png(record.label_png)
        source = record.label_png
    else:
        mapping = {category: classes.to_internal(category) for category in classes.category_ids}
        label_map = ground_truth_label_maps(record.document, mapping)[record.image_id]
        source = Path(record.name)
    if label_map.ndim != 2:
        raise LiidError(f"{source}: expected a single-channel palette PNG of class ids")
    values = np.unique(label_map)
    bad = values[(values > classes.num_classes) & (values != IGNORE_LABEL)]
    if bad.size:
        raise LiidError(
            f"{source}: label {int(bad[0])} exceeds the {classes.num_classes} classes of "
            f"{index.path}; "
            "use label maps made for this data set"
        )
    return label_map


class SemanticDataset(Dataset):
    """Training crops in [0, 1]: random scale, pad (image 0, label 255), random crop, random flip."""

    def __init__(
        self,
        records: list[SemanticRecord],
        index: DatasetIndex,
        crop_size: int,
        scale_range: tuple[float, float],
        flip_probability: float,
    ) -> None:
        self.records = records
        self.index = index
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.flip_probability = flip_probability

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[position]
        image = image_tensor(record.path)
        labels = torch.from_numpy(read_label_map(record, self.index).astype(np.int64))
        if image.shape[1:] != labels.shape:
            raise LiidError(
                f"{record.path}: image is {tuple(image.shape[1:])} but its label map is "
                f"{tuple(labels.shape)}; the labels were made for other images"
            )
        scale = random.uniform(*self.scale_range)
        size = [max(1, round(side * scale)) for side in labels.shape]
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        labels = F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()
        pad_bottom = max(0, self.crop_size - size[0])
        pad_right = max(0, self.crop_size - size[1])
        image = F.pad(image, (0, pad_right, 0, pad_bottom), value=0.0)
        labels = F.pad(labels, (0, pad_right, 0, pad_bottom), value=IGNORE_LABEL)
        top = random.randint(0, labels.shape[0] - self.crop_size)
        left = random.randint(0, labels.shape[1] - self.crop_size)
        image = image[:, top : top + self.crop_size, left : left + self.crop_size]
        labels = labels[top : top + self.crop_size, left : left + self.crop_size]
        if random.random() < self.flip_probability:
            image, labels = image.flip(-1), labels.flip(-1)
        return image.contiguous(), labels.contiguous()
