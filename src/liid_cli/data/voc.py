"""PASCAL VOC reader: image labels from Annotations/*.xml, ground truth from the segmentation PNGs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import masks
from liid_cli.errors import LiidError
from liid_cli.palette import read_label_png

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
VOC_CATEGORIES = [{"id": i + 1, "name": name, "supercategory": "voc"} for i, name in enumerate(VOC_CLASSES)]
VOC_IGNORE = 255


def split_ids(root: Path, split: str, split_file: Path | None) -> list[str]:
    """Image ids of a split: a custom list file, or ImageSets/Segmentation (then Main)/<split>.txt."""
    candidates = [split_file] if split_file else [
        root / "ImageSets" / "Segmentation" / f"{split}.txt", root / "ImageSets" / "Main" / f"{split}.txt",
    ]
    for path in candidates:
        if path is not None and path.is_file():
            ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
            if not ids:
                raise LiidError(f"{path}: the split list is empty; list one image id per line")
            return ids
    raise LiidError(
        f"{root}: no split list for {split!r} (looked for {', '.join(str(c) for c in candidates)}); "
        "pass --split-file or check --root points at VOCdevkit/VOC2012"
    )


def check_root(root: Path) -> None:
    missing = [name for name in ("JPEGImages", "Annotations") if not (root / name).is_dir()]
    if missing:
        raise LiidError(
            f"{root}: not a VOC root, missing folder(s) {', '.join(missing)}; "
            "point --root at VOCdevkit/VOC2012"
        )


def read_annotation(path: Path) -> tuple[int, int, list[dict[str, Any]]]:
    """(width, height, objects with class name and 0-based xyxy box) of one VOC XML file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise LiidError(f"{path}: annotation missing; every image of the split needs one") from None
    except ET.ParseError as error:
        raise LiidError(f"{path}: malformed XML ({error}); fix or re-download the annotation") from None
    size = tree.find("size")
    if size is None:
        raise LiidError(f"{path}: no <size> element; the annotation is incomplete")
    width, height = int(size.findtext("width", "0")), int(size.findtext("height", "0"))
    objects = []
    for obj in tree.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise LiidError(f"{path}: unknown class {name!r}; VOC has {', '.join(VOC_CLASSES)}")
        box = obj.find("bndbox")
        xyxy = [float(box.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")] if box is not None else None
        if xyxy is not None:
            xyxy = [xyxy[0] - 1, xyxy[1] - 1, xyxy[2], xyxy[3]]  # VOC boxes are 1-based, inclusive
        objects.append({"name": name, "xyxy": xyxy})
    return width, height, objects


def instances_from_pngs(object_png: Path, class_png: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(category id, instance mask, ignore mask) per instance in SegmentationObject/Class PNGs."""
    objects, classes = read_label_png(object_png), read_label_png(class_png)
    if objects.shape != classes.shape:
        raise LiidError(f"{object_png}: size differs from {class_png}; the two PNGs must match")
    ignore = objects == VOC_IGNORE
    instances = []
    for value in np.unique(objects):
        if value in (0, VOC_IGNORE):
            continue
        mask = objects == value
        values, counts = np.unique(classes[mask], return_counts=True)
        category = int(values[np.argmax(counts)])
        if 1 <= category <= len(VOC_CLASSES):
            instances.append((category, mask, ignore))
    return instances


def read_voc(root: Path, split: str, split_file: Path | None) -> tuple[list[dict], list[dict], bool]:
    """Index records and ground-truth annotations (empty if no segmentation PNGs) of a VOC split."""
    check_root(root)
    ids = split_ids(root, split, split_file)
    name_to_id = {c["name"]: c["id"] for c in VOC_CATEGORIES}
    images, annotations = [], []
    has_gt = (root / "SegmentationObject").is_dir() and (root / "SegmentationClass").is_dir()
    for number, image_name in enumerate(ids, start=1):
        jpeg = root / "JPEGImages" / f"{image_name}.jpg"
        if not jpeg.is_file():
            raise LiidError(f"{jpeg}: image listed in the split is missing; check the VOC download")
        width, height, objects = read_annotation(root / "Annotations" / f"{image_name}.xml")
        images.append({
            "id": number, "name": image_name, "file_name": f"{image_name}.jpg", "width": width,
            "height": height, "labels": sorted({name_to_id[o["name"]] for o in objects}),
            "boxes": [{"bbox": masks.xyxy_to_xywh(o["xyxy"]), "category_id": name_to_id[o["name"]]}
                      for o in objects if o["xyxy"] is not None],
        })
        object_png = root / "SegmentationObject" / f"{image_name}.png"
        if has_gt and object_png.is_file():
            class_png = root / "SegmentationClass" / f"{image_name}.png"
            for category, mask, _ in instances_from_pngs(object_png, class_png):
                annotations.append({
                    "id": len(annotations) + 1, "image_id": number, "category_id": category,
                    "segmentation": masks.encode(mask), "area": int(mask.sum()),
                    "bbox": masks.xyxy_to_xywh(masks.box_xyxy(mask)), "iscrowd": 0,
                })
    return images, annotations, has_gt
