"""Mask quality of box-to-mask pseudo labels on the labelled (target) classes: class-mean best
IoU per ground-truth instance, and COCOeval's AP / AP50 / AP75 / ABO. Measurement only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from liid_cli import artifacts, masks, registry
from liid_cli.data.index import load_index
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.fileio import read_json


def class_mean_best_iou(
    ground_truth: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    class_names: dict[int, str],
    image_sizes: dict[int, tuple[int, int]],
) -> dict[str, float]:
    """Per class: mean over ground-truth instances (polygon or RLE; `image_sizes`: id -> (height,
    width)) of the best IoU with a same-class prediction of the same image (0 if there is none)."""
    predicted: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for prediction in predictions:
        predicted.setdefault((prediction["image_id"], prediction["category_id"]), []).append(
            prediction["segmentation"]
        )
    best: dict[str, list[float]] = {}
    for annotation in ground_truth:
        candidates = predicted.get((annotation["image_id"], annotation["category_id"]), [])
        truth = masks.segmentation_rle(
            annotation["segmentation"], *image_sizes[annotation["image_id"]]
        )
        ious = masks.iou_matrix([truth], candidates)
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
    sizes = {int(i["id"]): (int(i["height"]), int(i["width"])) for i in gt["images"]}
    per_class_iou = class_mean_best_iou(gt_annotations, results, names, sizes)
    return {
        "mIoU": float(np.mean(list(per_class_iou.values()))) if per_class_iou else None,
        "AP": summary["AP"],
        "AP50": summary["AP50"],
        "AP75": summary["AP75"],
        "ABO": summary["ABO"],
        "per_class_IoU": per_class_iou,
        "per_class_AP50": {name: values["AP50"] for name, values in summary["per_class"].items()},
    }


class MethodRun(NamedTuple):
    folder: Path  # the box2mask stage folder
    manifest: dict[str, Any]

    @property
    def index_path(self) -> Path:
        """The data set whose boxes the run labelled."""
        return Path(self.manifest["inputs"]["index"]["path"])


def method_runs(run_dir: Path) -> dict[str, MethodRun]:
    """{method: its box2mask stage}: `<run_dir>/<method>/box2mask/` (a `make box2mask-real`
    layout), or the run's own box2mask stage, named by its method."""
    folders = {
        path.parent.parent.name: path.parent
        for path in sorted(
            run_dir.glob(f"*/{registry.stage('box2mask').folder}/{artifacts.MANIFEST}")
        )
    }
    found = {
        method: MethodRun(folder, read_json(folder / artifacts.MANIFEST))
        for method, folder in folders.items()
    }
    own = artifacts.stage_dir(run_dir, "box2mask")
    if (own / artifacts.MANIFEST).is_file():
        manifest = read_json(own / artifacts.MANIFEST)
        found.setdefault(str(manifest["metrics"]["method"]), MethodRun(own, manifest))
    return found


def method_metrics(run: MethodRun, classes: list[str]) -> dict[str, Any]:
    """One box2mask run's pseudo masks of `classes` against ground truth (its last round), with how
    it was supervised; {} when its data set has no ground truth. Reuses the stage's own
    measurement when it labelled exactly these classes."""
    recorded = run.manifest["metrics"]
    pseudo_path = run.folder / artifacts.PSEUDO_INSTANCES_JSON
    index = load_index(run.index_path)
    gt_path = index.ground_truth_path
    if gt_path is None or not gt_path.is_file():
        return {}
    quality = recorded["final"].get("ground_truth_eval")
    if quality is None or sorted(recorded["target_classes"]) != sorted(classes):
        ids = {int(c["id"]) for c in index.categories if c["name"] in classes}
        pseudo = read_json(pseudo_path)["annotations"]
        quality = evaluate_against_ground_truth(
            gt_path, [a for a in pseudo if a["category_id"] in ids], sorted(ids)
        )
    return {
        **quality,
        "weakly_supervised": recorded["weakly_supervised"],
        "rounds": len(recorded["rounds"]),
        "classes": sorted(classes),
        "pseudo_instances": str(pseudo_path),
    }


def common_target_classes(runs: list[MethodRun]) -> list[str]:
    """The classes every weakly supervised run labelled (every run's when none is weak): the
    classes all methods are scored on, so a fully supervised reference that labelled more is
    compared on the same boxes."""
    recorded = [run.manifest["metrics"] for run in runs]
    weak = [m for m in recorded if m["weakly_supervised"]] or recorded
    shared = set(weak[0]["target_classes"]).intersection(*(m["target_classes"] for m in weak))
    return sorted(shared)
