"""Pseudo masks from boxes: label a data set's boxes, write COCO json + palette PNGs, measure them.

The output formats are export-coco's: a COCO instances document (RLE masks, `score`, `area`,
`bbox` xywh, `iscrowd` 0, ids from 1, `images` = the index's images) and one palette PNG per
image (internal class ids, 0 background, 255 where a box was left unlabelled).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import artifacts, masks
from liid_cli.box2mask.data import TargetBox
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex
from liid_cli.fileio import write_json
from liid_cli.log import track
from liid_cli.palette import IGNORE_LABEL, save_label_png

# (image, its target boxes) -> (masks bool (M, H, W), scores (M,), fell back to the box (M,))
Labeller = Callable[
    [dict[str, Any], np.ndarray, list[TargetBox]], tuple[np.ndarray, np.ndarray, np.ndarray]
]


def label_boxes(
    index: DatasetIndex, boxes: dict[int, list[TargetBox]], labeller: Labeller, description: str
) -> tuple[list[dict[str, Any]], int]:
    """COCO annotations (ids from 1) for every box, and how many masks fell back to their box."""
    annotations: list[dict[str, Any]] = []
    fell_back = 0
    for image in track(index.images, description):
        targets = boxes[int(image["id"])]
        if not targets:
            continue
        pixels = read_rgb(index.image_path(image))
        object_masks, scores, fallback = labeller(image, pixels, targets)
        fell_back += int(fallback.sum())
        for target, rle, mask, score in zip(
            targets, masks.encode_many(object_masks), object_masks, scores
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image["id"]),
                    "category_id": target.category_id,
                    "segmentation": rle,
                    "area": int(mask.sum()),
                    "bbox": masks.xyxy_to_xywh(masks.box_xyxy(mask)),
                    "score": float(score) * target.score,
                    "iscrowd": 0,
                }
            )
    return annotations, fell_back


def pseudo_document(
    index: DatasetIndex, annotations: list[dict[str, Any]], method: str
) -> dict[str, Any]:
    return {
        "info": {
            "description": f"liid box2mask pseudo instances ({method})",
            "index": str(index.path),
        },
        "images": index.images,
        "categories": index.categories,
        "annotations": annotations,
    }


def write_document(
    folder: Path, index: DatasetIndex, annotations: list[dict[str, Any]], method: str
) -> None:
    """<folder>/pseudo_instances.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / artifacts.PSEUDO_INSTANCES_JSON,
        pseudo_document(index, annotations, method),
        indent=None,
    )


def write_semantic_pngs(
    semantic: Path,
    index: DatasetIndex,
    annotations: list[dict[str, Any]],
    ignored: dict[int, list[TargetBox]],
) -> None:
    """<image name>.png per image: internal class ids, larger objects drawn first, 255 in `ignored` boxes."""
    semantic.mkdir(parents=True, exist_ok=True)
    classes = index.classes
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in annotations:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in track(index.images, "palette PNGs"):
        labels = np.zeros((image["height"], image["width"]), dtype=np.uint8)
        for box in ignored.get(int(image["id"]), []):
            x0, y0, x1, y1 = box.box
            labels[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = IGNORE_LABEL
        for annotation in sorted(by_image.get(int(image["id"]), []), key=lambda a: -a["area"]):
            labels[masks.decode(annotation["segmentation"])] = classes.to_internal(
                annotation["category_id"]
            )
        save_label_png(semantic / f"{image['name']}.png", labels)
