"""Instance metrics against COCO ground truth: COCOeval AP family plus ABO (average best overlap).

Metrics are fractions in [0, 1]; a size range without ground truth gives None. Predictions are a
COCO results list ({image_id, category_id, segmentation RLE, score}) or a COCO instances document
(its `annotations`, e.g. the exported pseudo labels); a prediction without `score` counts as 1.0.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from liid_cli import masks
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json

IouType = Literal["segm", "bbox"]
COCO_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
REPORTED_THRESHOLDS = {"AP25": 0.25, "AP50": 0.5, "AP70": 0.7, "AP75": 0.75}
SIZE_RANGES = {"APs": 1, "APm": 2, "APl": 3}  # indices into COCOeval's areaRng (0 = all)
MAX_DETECTIONS = 100
COCO_AREA_LABELS = ("all", "small", "medium", "large")
METRIC_KEYS = ("AP", *REPORTED_THRESHOLDS, *SIZE_RANGES, "ABO")


def evaluate_instances(
    ground_truth: Path | dict[str, Any],
    predictions: Path | list[dict[str, Any]] | dict[str, Any],
    *,
    iou_type: IouType = "segm",
) -> dict[str, Any]:
    """AP (0.5:0.95), AP at 0.25/0.5/0.7/0.75, AP small/medium/large, ABO and per-class AP.

    Raises LiidError for predictions on images the ground truth lacks, categories it does not
    know, or an instances document whose category set differs from the ground truth's.
    """
    gt_name = str(ground_truth) if isinstance(ground_truth, Path) else "ground truth"
    pred_name = str(predictions) if isinstance(predictions, Path) else "predictions"
    gt_data = _load_document(ground_truth, gt_name)
    if not isinstance(gt_data, dict) or not {"images", "categories", "annotations"} <= set(gt_data):
        raise LiidError(
            f"{gt_name}: not a COCO instances file (needs images, categories, annotations)"
        )
    pred_data = _load_document(predictions, pred_name)
    results = _prediction_list(pred_data, gt_data, pred_name, gt_name)
    _check_predictions(results, gt_data, pred_name, gt_name)

    gt_coco = _coco_from_dict(_complete_ground_truth(gt_data))
    per_class_names = {int(c["id"]): str(c["name"]) for c in gt_data["categories"]}
    summary: dict[str, Any] = {
        "num_images": len(gt_data["images"]),
        "num_ground_truth": sum(1 for a in gt_data["annotations"] if not a.get("iscrowd", 0)),
        "num_predictions": len(results),
        "iou_type": iou_type,
    }
    if not results:
        zero = 0.0 if summary["num_ground_truth"] else None
        summary.update({key: zero for key in METRIC_KEYS})
        ranges = dict(zip(COCO_AREA_LABELS, COCOeval(iouType=iou_type).params.areaRng, strict=True))
        for key, area_index in SIZE_RANGES.items():
            low, high = ranges[COCO_AREA_LABELS[area_index]]
            inside = any(
                low <= a["area"] < high for a in gt_coco.dataset["annotations"] if not a["iscrowd"]
            )
            summary[key] = 0.0 if inside else None
        summary["per_class"] = {
            name: {"AP": zero, "AP50": zero} for name in per_class_names.values()
        }
        return summary

    with contextlib.redirect_stdout(io.StringIO()):
        dt_coco = gt_coco.loadRes(_normalised_results(results, gt_coco, iou_type))
        evaluator = COCOeval(gt_coco, dt_coco, iou_type)
        evaluator.params.iouThrs = np.array(
            sorted({*REPORTED_THRESHOLDS.values(), *COCO_THRESHOLDS})
        )
        evaluator.params.maxDets = [1, 10, MAX_DETECTIONS]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # (T, R, K, A, M), -1 where undefined
    thresholds = evaluator.params.iouThrs
    coco_rows = np.isin(np.round(thresholds, 2), COCO_THRESHOLDS)
    summary["AP"] = _mean_defined(precision[coco_rows, :, :, 0, -1])
    for key, threshold in REPORTED_THRESHOLDS.items():
        row = int(np.flatnonzero(np.isclose(thresholds, threshold))[0])
        summary[key] = _mean_defined(precision[row, :, :, 0, -1])
    for key, area_index in SIZE_RANGES.items():
        summary[key] = _mean_defined(precision[coco_rows, :, :, area_index, -1])
    row50 = int(np.flatnonzero(np.isclose(thresholds, 0.5))[0])
    summary["per_class"] = {
        per_class_names[category_id]: {
            "AP": _mean_defined(precision[coco_rows, :, k, 0, -1]),
            "AP50": _mean_defined(precision[row50, :, k, 0, -1]),
        }
        for k, category_id in enumerate(evaluator.params.catIds)
    }
    summary["ABO"] = _average_best_overlap(gt_coco, dt_coco, iou_type)
    return summary


def average_best_overlap(
    ground_truth: list[list[dict[str, Any]]], predictions: list[list[dict[str, Any]]]
) -> float:
    """Mean over ground-truth masks of the best IoU of any predicted mask of the same image.

    Both arguments hold, per image, a list of COCO RLEs (same image order); an image without
    predictions contributes zeros. Raises ValueError when there is no ground truth at all.
    """
    best: list[np.ndarray] = []
    for gt_rles, pred_rles in zip(ground_truth, predictions, strict=True):
        if not gt_rles:
            continue
        if not pred_rles:
            best.append(np.zeros(len(gt_rles)))
            continue
        ious = np.asarray(mask_utils.iou(_rles(pred_rles), _rles(gt_rles), [0] * len(gt_rles)))
        best.append(ious.max(axis=0))
    if not best:
        raise ValueError("no ground-truth instances: ABO is undefined")
    return float(np.concatenate(best).mean())


def _average_best_overlap(gt_coco: COCO, dt_coco: COCO, iou_type: IouType) -> float | None:
    per_image_gt: list[list[Any]] = []
    per_image_dt: list[list[Any]] = []
    for image_id in gt_coco.getImgIds():
        gt_anns = [a for a in gt_coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        dt_anns = dt_coco.imgToAnns.get(image_id, [])
        if iou_type == "segm":
            per_image_gt.append([gt_coco.annToRLE(a) for a in gt_anns])
            per_image_dt.append([dt_coco.annToRLE(a) for a in dt_anns])
        else:
            per_image_gt.append([a["bbox"] for a in gt_anns])
            per_image_dt.append([a["bbox"] for a in dt_anns])
    if not any(per_image_gt):
        return None
    if iou_type == "segm":
        return average_best_overlap(per_image_gt, per_image_dt)
    best = []
    for gt_boxes, dt_boxes in zip(per_image_gt, per_image_dt, strict=True):
        if gt_boxes:
            ious = (
                np.asarray(mask_utils.iou(dt_boxes, gt_boxes, [0] * len(gt_boxes)))
                if dt_boxes
                else None
            )
            best.append(
                ious.max(axis=0) if ious is not None and ious.size else np.zeros(len(gt_boxes))
            )
    return float(np.concatenate(best).mean())


def _rles(rles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "size": r["size"],
            "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"],
        }
        for r in rles
    ]


def _mean_defined(values: np.ndarray) -> float | None:
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else None


def _load_document(source: Path | list[dict[str, Any]] | dict[str, Any], name: str) -> Any:
    if isinstance(source, Path):
        if not source.is_file():
            raise LiidError(f"missing {source}: check the path")
        return read_json(source)
    return source


def _prediction_list(
    data: Any, gt_data: dict[str, Any], pred_name: str, gt_name: str
) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "annotations" in data:
        if "categories" in data:
            ours = {(int(c["id"]), str(c["name"])) for c in data["categories"]}
            theirs = {(int(c["id"]), str(c["name"])) for c in gt_data["categories"]}
            if ours != theirs:
                raise LiidError(
                    f"{pred_name}: category set {sorted(ours)} differs from {gt_name}'s "
                    f"{sorted(theirs)}; "
                    "evaluate against ground truth of the same data set"
                )
        return list(data["annotations"])
    raise LiidError(
        f"{pred_name}: expected a COCO results list or an instances file with `annotations`"
    )


def _check_predictions(
    results: list[dict[str, Any]], gt_data: dict[str, Any], pred_name: str, gt_name: str
) -> None:
    image_ids = {int(image["id"]) for image in gt_data["images"]}
    category_ids = {int(c["id"]) for c in gt_data["categories"]}
    for result in results:
        if not isinstance(result, dict) or "image_id" not in result or "category_id" not in result:
            raise LiidError(
                f"{pred_name}: each prediction needs image_id, category_id and segmentation"
            )
    unknown_images = sorted({int(r["image_id"]) for r in results} - image_ids)
    if unknown_images:
        raise LiidError(
            f"{pred_name}: predictions for {len(unknown_images)} image(s) not in {gt_name} "
            f"(e.g. image_id {unknown_images[0]}); "
            "evaluate against the ground truth of the same split"
        )
    unknown_categories = sorted({int(r["category_id"]) for r in results} - category_ids)
    if unknown_categories:
        raise LiidError(
            f"{pred_name}: category ids {unknown_categories} are not in {gt_name} "
            f"(known: {sorted(category_ids)}); the category sets do not match"
        )


def _complete_ground_truth(data: dict[str, Any]) -> dict[str, Any]:
    """A copy with `iscrowd`, `area` and `id` filled in where a hand-made file left them out."""
    data = copy.deepcopy(data)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in data["images"]}
    for number, ann in enumerate(data["annotations"], start=1):
        ann.setdefault("iscrowd", 0)
        ann.setdefault("id", number)
        if "area" not in ann:
            height, width = sizes[int(ann["image_id"])]
            ann["area"] = float(
                mask_utils.area(masks.segmentation_rle(ann["segmentation"], height, width))
            )
    return data


def _normalised_results(
    results: list[dict[str, Any]], gt_coco: COCO, iou_type: IouType
) -> list[dict[str, Any]]:
    normalised = []
    for result in results:
        item = {
            "image_id": int(result["image_id"]),
            "category_id": int(result["category_id"]),
            "score": float(result.get("score", 1.0)),
        }
        if iou_type == "segm":
            # No `bbox`: with one, loadRes takes the box area as the instance area (size ranges).
            image = gt_coco.imgs[item["image_id"]]
            item["segmentation"] = masks.segmentation_rle(
                result["segmentation"], image["height"], image["width"]
            )
        else:
            item["bbox"] = [float(v) for v in result["bbox"]]
        normalised.append(item)
    return normalised


def _coco_from_dict(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
