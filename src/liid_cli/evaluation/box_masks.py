"""Mask quality of box-to-mask pseudo labels on the labelled (target) classes: class-mean best
IoU per ground-truth instance, and COCOeval's AP / AP50 / AP75 / ABO. Measurement only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import masks
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.fileio import read_json


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
