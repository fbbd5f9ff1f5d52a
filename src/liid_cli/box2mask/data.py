"""What box-to-mask reads: source instances (box + ground-truth mask) and target boxes.

Source instances come from a data set index plus its ground-truth COCO file, restricted to the
source classes. Target boxes come from the index's `boxes` or from a COCO json of boxes (an
instances file or a results list); boxes are clipped to the image and empty ones skipped, and
both are counted so the stage can report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from liid_cli import masks
from liid_cli.box2mask.geometry import clip_boxes
from liid_cli.data.index import DatasetIndex
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json


@dataclass(frozen=True)
class SourceInstance:
    """One source object: where its image is, its xyxy box, its mask as COCO RLE and its class."""

    image_path: Path
    image_id: int
    box: tuple[float, float, float, float]
    rle: dict[str, Any]
    class_name: str


@dataclass(frozen=True)
class TargetBox:
    box: tuple[float, float, float, float]  # xyxy, clipped to the image
    category_id: int
    score: float


@dataclass
class BoxReport:
    """Counts of the boxes read, with a few examples of each problem for the log."""

    read: int = 0
    clipped: int = 0
    empty: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, problem: str, image: dict[str, Any], box: list[float]) -> None:
        if len(self.examples) < 3:
            self.examples.append(f"{problem} box {[round(v, 1) for v in box]} in {image['name']}")


def class_names_to_ids(index: DatasetIndex, names: list[str], setting: str) -> dict[str, int]:
    """{name: COCO category id} for `names`; an unknown name is an error naming the setting."""
    by_name = {str(c["name"]): int(c["id"]) for c in index.categories}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise LiidError(
            f"{index.path}: {setting} {unknown} not among its classes ({', '.join(by_name)}); fix {setting}"
        )
    return {name: by_name[name] for name in names}


def load_source_instances(
    index: DatasetIndex, source_classes: list[str], min_area: int
) -> list[SourceInstance]:
    """Every non-crowd ground-truth instance of a source class with at least `min_area` pixels."""
    gt_path = index.ground_truth_path
    if gt_path is None or not gt_path.is_file():
        raise LiidError(
            f"{index.path}: no ground-truth masks ({gt_path or 'info.ground_truth unset'}); "
            "train-box2mask needs a source data set with instance masks"
        )
    ids = class_names_to_ids(index, source_classes, "source_classes")
    name_of = {category_id: name for name, category_id in ids.items()}
    images = {int(image["id"]): image for image in index.images}
    instances = []
    for annotation in read_json(gt_path).get("annotations", []):
        image = images.get(int(annotation["image_id"]))
        if (
            image is None
            or annotation.get("iscrowd", 0)
            or int(annotation["category_id"]) not in name_of
        ):
            continue
        rle = masks.segmentation_rle(annotation["segmentation"], image["height"], image["width"])
        if int(mask_utils.area(rle)) < min_area:
            continue
        x0, y0, w, h = (float(v) for v in mask_utils.toBbox(rle))
        instances.append(
            SourceInstance(
                index.image_path(image),
                int(image["id"]),
                (x0, y0, x0 + w, y0 + h),
                rle,
                name_of[int(annotation["category_id"])],
            )
        )
    if not instances:
        raise LiidError(
            f"{gt_path}: no instances of the source classes {source_classes}; check source_classes"
        )
    return instances


def _box_records(
    index: DatasetIndex, boxes_json: Path | None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    images = {int(image["id"]): image for image in index.images}
    if boxes_json is None:
        if not any("boxes" in image for image in index.images):
            raise LiidError(
                f"{index.path}: the index has no boxes; pass --boxes BOXES.json (COCO boxes)"
            )
        return [(image, record) for image in index.images for record in image.get("boxes", [])]
    data = read_json(boxes_json)
    records = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise LiidError(
            f"{boxes_json}: expected a COCO instances file or a list of {{image_id, category_id, bbox}}"
        )
    known = {int(c["id"]) for c in index.categories}
    for record in records:
        if not isinstance(record, dict) or not {"image_id", "category_id", "bbox"} <= set(record):
            raise LiidError(
                f"{boxes_json}: each box needs image_id, category_id and bbox (x, y, w, h)"
            )
    if isinstance(data, dict) and "images" in data and "categories" in data:
        records = _to_index_ids(records, data, index, boxes_json)
    pairs = []
    for record in records:
        image = images.get(int(record["image_id"]))
        if image is None:
            raise LiidError(
                f"{boxes_json}: image_id {record['image_id']} is not in {index.path}; "
                "use boxes of the same data set"
            )
        if int(record["category_id"]) not in known:
            raise LiidError(
                f"{boxes_json}: category_id {record['category_id']} is not in {index.path}"
            )
        pairs.append((image, record))
    return pairs


def _to_index_ids(
    records: list[dict[str, Any]], document: dict[str, Any], index: DatasetIndex, path: Path
) -> list[dict[str, Any]]:
    """A COCO instances file's boxes with the index's image and category ids, matched by file
    name and class name, so boxes made for the same photos elsewhere label this data set."""
    by_file = {str(image["file_name"]): int(image["id"]) for image in index.images}
    by_name = {str(c["name"]): int(c["id"]) for c in index.categories}
    image_ids, category_ids = {}, {}
    for image in document["images"]:
        if image.get("file_name") in by_file:
            image_ids[int(image["id"])] = by_file[image["file_name"]]
    for category in document["categories"]:
        if category.get("name") in by_name:
            category_ids[int(category["id"])] = by_name[category["name"]]
    converted = []
    for record in records:
        if int(record["image_id"]) not in image_ids:
            raise LiidError(
                f"{path}: image_id {record['image_id']} is not an image of {index.path} (matched "
                "by file_name); use boxes of the same photos"
            )
        if int(record["category_id"]) not in category_ids:
            raise LiidError(
                f"{path}: category_id {record['category_id']} names no class of {index.path} "
                f"({', '.join(by_name)}); rename the category or add the class to the data set"
            )
        converted.append(
            {
                **record,
                "image_id": image_ids[int(record["image_id"])],
                "category_id": category_ids[int(record["category_id"])],
            }
        )
    return converted


def load_target_boxes(
    index: DatasetIndex, boxes_json: Path | None
) -> tuple[dict[int, list[TargetBox]], BoxReport]:
    """Boxes per image id (every index image present, maybe with none), clipped; empty ones dropped."""
    per_image: dict[int, list[TargetBox]] = {int(image["id"]): [] for image in index.images}
    report = BoxReport()
    for image, record in _box_records(index, boxes_json):
        x, y, w, h = (float(v) for v in record["bbox"])
        clipped, was_clipped, is_empty = clip_boxes(
            np.array([x, y, x + w, y + h]), image["height"], image["width"]
        )
        report.read += 1
        if is_empty[0]:
            report.empty += 1
            report.note("empty", image, record["bbox"])
            continue
        if was_clipped[0]:
            report.clipped += 1
            report.note("clipped", image, record["bbox"])
        box = tuple(float(v) for v in clipped[0])
        per_image[int(image["id"])].append(
            TargetBox(box, int(record["category_id"]), float(record.get("score", 1.0)))  # type: ignore[arg-type]
        )
    return per_image, report


def choose_target_classes(
    index_classes: list[str],
    source_classes: list[str],
    requested: list[str] | None,
    allow_seen_classes: bool,
    where: str,
) -> list[str]:
    """The classes to label. Seen (source) classes are refused unless allowed.

    `requested` None means every class of the index, less the source classes unless allowed.
    """
    seen = set(source_classes)
    if requested is None:
        unseen = [name for name in index_classes if allow_seen_classes or name not in seen]
        if not unseen:
            raise LiidError(
                f"{where}: no class to label: the model saw masks of all its classes; use a model "
                "trained on other classes, or pass --set target_classes=[...] --allow-seen-classes"
            )
        return unseen
    unknown = [name for name in requested if name not in index_classes]
    if unknown:
        raise LiidError(
            f"{where}: target_classes {unknown} not among its classes ({', '.join(index_classes)})"
        )
    refused = [name for name in requested if name in seen]
    if refused and not allow_seen_classes:
        raise LiidError(
            f"refusing to label {refused}: the box-to-mask model was trained on their masks "
            "(source classes); drop them from target_classes, or pass --allow-seen-classes "
            "(the run is then recorded as not weakly supervised)"
        )
    return list(requested)
