"""`liid eval` on a run folder: find what to evaluate and its ground truth, write `metrics.json`.

Evaluation is a read-only measurement (seconds), so it bypasses the stage runner: each call
rewrites `<run>/eval/<name>/metrics.json` = {kind, name, inputs with sha256, metrics, seconds}.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from liid_cli import artifacts
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError, MissingTruth
from liid_cli.evaluation.box_masks import common_target_classes, method_metrics, method_runs
from liid_cli.evaluation.instances import IouType, evaluate_instances
from liid_cli.evaluation.labels import evaluate_labels
from liid_cli.evaluation.semantic import (
    evaluate_semantic,
    ground_truth_label_maps,
    read_prediction_maps,
)
from liid_cli.fileio import file_sha256, read_json, write_json
from liid_cli.proposals.store import proposals_path
from liid_cli.runner import index_from_upstream

Source = Literal["pseudo", "predictions"]
SOURCE_STAGE: dict[str, str] = {"pseudo": "export-coco", "predictions": "predict"}
SOURCE_FILE: dict[str, str] = {
    "pseudo": artifacts.PSEUDO_INSTANCES_JSON,
    "predictions": artifacts.PREDICTIONS_JSON,
}
SOURCE_NAME: dict[str, str] = {
    "pseudo": artifacts.EVAL_PSEUDO,
    "predictions": artifacts.EVAL_PREDICTIONS,
}
SEMANTIC_SOURCE_STAGE: dict[str, str] = {"pseudo": "export-coco", "predictions": "predict-semantic"}
SEMANTIC_SOURCE_NAME: dict[str, str] = {
    "pseudo": artifacts.EVAL_SEMANTIC,
    "predictions": artifacts.EVAL_SEMANTIC_PREDICTIONS,
}


def resolve_ground_truth(
    gt: Path | None, index_path: Path | None, what: str
) -> tuple[Path, DatasetIndex | None]:
    """The ground-truth file: `--gt`, else the one named by the data set index."""
    index = load_index(index_path) if index_path is not None else None
    if gt is not None:
        return gt, index
    if index is None:
        raise LiidError(f"no ground truth for {what}: pass --gt GT.json or --data INDEX.json")
    if index.ground_truth_path is None or not index.ground_truth_path.is_file():
        raise MissingTruth(f"{index.path}: the data set has no ground-truth masks; pass --gt GT.json")
    return index.ground_truth_path, index


def evaluate_run_instances(
    run_dir: Path,
    *,
    source: Source,
    predictions: Path | None = None,
    gt: Path | None = None,
    index_path: Path | None = None,
    name: str | None = None,
    iou_type: IouType = "segm",
) -> tuple[Path, dict[str, Any]]:
    """Evaluate the run's pseudo labels or predictions (or any file) and write metrics.json."""
    stage = SOURCE_STAGE[source]
    if predictions is None:
        predictions = artifacts.stage_dir(run_dir, stage) / SOURCE_FILE[source]
        if not predictions.is_file():
            raise LiidError(
                f"missing {predictions}: run `liid {stage} --run {run_dir}` first, "
                "or pass --predictions"
            )
    index_path = index_path or index_from_upstream(run_dir, (stage,))
    gt_path, _ = resolve_ground_truth(gt, index_path, str(predictions))
    started = time.time()
    metrics = evaluate_instances(gt_path, predictions, iou_type=iou_type)
    record = _record(
        "instances",
        name or SOURCE_NAME[source],
        {"predictions": predictions, "ground_truth": gt_path},
        metrics,
        started,
    )
    path = artifacts.eval_metrics_path(run_dir, record["name"])
    write_json(path, record)
    return path, record


def evaluate_run_semantic(
    run_dir: Path,
    *,
    source: Source = "pseudo",
    predictions: Path | None = None,
    gt: Path | None = None,
    index_path: Path | None = None,
    name: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate palette PNG label maps (pseudo labels or predictions); write metrics.json."""
    stage = SEMANTIC_SOURCE_STAGE[source]
    if predictions is None:
        predictions = artifacts.stage_dir(run_dir, stage) / artifacts.SEMANTIC_DIR
        if not predictions.is_dir():
            raise LiidError(
                f"missing {predictions}: run `liid {stage} --run {run_dir}` first, "
                "or pass --predictions"
            )
    index_path = index_path or index_from_upstream(run_dir, (stage,))
    if index_path is None:
        raise LiidError(
            "no data set index: pass --data INDEX.json (it names the images and classes)"
        )
    gt_path, index = resolve_ground_truth(gt, index_path, str(predictions))
    assert index is not None
    ground_truth = read_json(gt_path)
    classes = index.classes
    gt_categories = {int(c["id"]) for c in ground_truth.get("categories", [])}
    if gt_categories != set(classes.category_ids):
        raise LiidError(
            f"{gt_path}: categories {sorted(gt_categories)} differ from {index.path}'s "
            f"{sorted(classes.category_ids)}; use the ground truth of the same data set"
        )
    started = time.time()
    truth = ground_truth_label_maps(
        ground_truth, {c: classes.to_internal(c) for c in classes.category_ids}
    )
    images = [im for im in index.images if int(im["id"]) in truth]
    pairs = zip(
        (truth[int(im["id"])] for im in images),
        read_prediction_maps(predictions, [im["name"] for im in images]),
        strict=True,
    )
    metrics = evaluate_semantic(pairs, ["background", *classes.names])
    record = _record(
        "semantic",
        name or SEMANTIC_SOURCE_NAME[source],
        {"predictions": predictions, "ground_truth": gt_path},
        metrics,
        started,
    )
    path = artifacts.eval_metrics_path(run_dir, record["name"])
    write_json(path, record)
    return path, record


def evaluate_run_labels(
    run_dir: Path, *, gt: Path | None = None, name: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Kinds of the run's proposals and pseudo instances per labelling step; write metrics.json."""
    index_path = index_from_upstream(run_dir, ("proposals",))
    if index_path is None:
        raise LiidError(f"{run_dir}: no finished proposals stage; run `liid proposals` first")
    gt_path, index = resolve_ground_truth(gt, index_path, str(run_dir))
    assert index is not None
    started = time.time()
    metrics = evaluate_labels(run_dir, index, read_json(gt_path))
    record = _record(
        "labels",
        name or artifacts.EVAL_LABELS,
        {"proposals": proposals_path(run_dir), "ground_truth": gt_path},
        metrics,
        started,
    )
    path = artifacts.eval_metrics_path(run_dir, record["name"])
    write_json(path, record)
    return path, record


def evaluate_box2mask_methods(run_dir: Path) -> list[dict[str, Any]]:
    """One `box2mask` record per box-to-mask method under the run (`<run>/<method>/box2mask/`):
    its pseudo masks of the classes the weakly supervised runs labelled against ground truth,
    written to <run>/eval/<method>/."""
    methods = method_runs(run_dir)
    if not methods:
        raise LiidError(
            f"{run_dir}: no box-to-mask runs (<method>/box2mask/manifest.json); "
            "run `liid box2mask` or `make box2mask-real` first"
        )
    classes = common_target_classes(list(methods.values()))
    records = []
    for method, run in methods.items():
        started = time.time()
        metrics = method_metrics(run, classes)
        if not metrics:
            raise MissingTruth(f"{run.folder}: its data set has no ground truth to score against")
        inputs = {"pseudo_instances": run.folder / artifacts.PSEUDO_INSTANCES_JSON}
        record = _record("box2mask", method, inputs, metrics, started)
        write_json(artifacts.eval_metrics_path(run_dir, method), record)
        records.append(record)
    return records


def run_evaluations(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every `<run>/eval/<name>/metrics.json` of a run, by name (sorted)."""
    folder = artifacts.eval_metrics_path(run_dir, "_").parent.parent
    records = {}
    for path in sorted(folder.glob(f"*/{artifacts.METRICS_JSON}")):
        records[path.parent.name] = read_json(path)
    return records


def _record(
    kind: str, name: str, inputs: dict[str, Path], metrics: dict[str, Any], started: float
) -> dict[str, Any]:
    if not name or "/" in name or name.startswith("."):
        raise LiidError(f"--name {name!r}: use a plain folder name such as `pseudo_argmax`")
    described = {
        key: {"path": str(path), "sha256": file_sha256(path) if path.is_file() else None}
        for key, path in inputs.items()
    }
    return {
        "kind": kind,
        "name": name,
        "inputs": described,
        "metrics": metrics,
        "seconds": round(time.time() - started, 3),
        "finished": time.time(),
    }
