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
from liid_cli.box2mask.training import IGNORE_LABEL
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.fileio import read_json, write_json
from liid_cli.log import track
from liid_cli.palette import save_label_png

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


def class_mean_best_iou(
    ground_truth: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    class_names: dict[int, str],
) -> dict[str, float]:
    """Per class: mean over ground-truth instances of the best IoU with a same-class prediction
    of the same image (0 when there is none)."""
    predicted: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for prediction in predictions:
        predicted.setdefault((prediction["image_id"], prediction["category_id"]), []).append(
            prediction["segmentation"]
        )
    best: dict[str, list[float]] = {}
    for annotation in ground_truth:
        candidates = predicted.get((annotation["image_id"], annotation["category_id"]), [])
        ious = masks.iou_matrix([annotation["segmentation"]], candidates)
        best.setdefault(class_names[annotation["category_id"]], []).append(
            float(ious.max()) if candidates else 0.0
        )
    return {name: float(np.mean(values)) for name, values in sorted(best.items())}


def evaluate_against_ground_truth(
    gt_path: Path, annotations: list[dict[str, Any]], category_ids: list[int]
) -> dict[str, Any]:
    """Mask quality on the labelled classes only: mIoU (class mean of best same-class IoU per
    ground-truth instance), AP, AP50, AP75 and ABO from COCOeval. Measurement only."""
    gt = read_json(gt_path)
    keep = set(category_ids)
    gt_annotations = [
        a for a in gt["annotations"] if a["category_id"] in keep and not a.get("iscrowd", 0)
    ]
    gt_subset = {
        **gt,
        "categories": [c for c in gt["categories"] if c["id"] in keep],
        "annotations": gt_annotations,
    }
    results = [
        {key: a[key] for key in ("image_id", "category_id", "segmentation", "score", "bbox")}
        for a in annotations
    ]
    summary = evaluate_instances(gt_subset, results)
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    per_class_iou = class_mean_best_iou(gt_annotations, results, names)
    return {
        "mIoU": float(np.mean(list(per_class_iou.values()))) if per_class_iou else None,
        "AP": summary["AP"],
        "AP50": summary["AP50"],
        "AP75": summary["AP75"],
        "ABO": summary["ABO"],
        "per_class_IoU": per_class_iou,
        "per_class_AP50": {name: values["AP50"] for name, values in summary["per_class"].items()},
    }
