"""Proposal quality against ground-truth instances: recall at IoU 0.5 / 0.7, COCO-style average
recall (AR: recall averaged over IoU 0.5:0.05:0.95, as in DeepMask's Table 1) and ABO per count.

For each ground-truth instance (crowd regions excluded) and each count k, its best overlap is the
largest IoU with any of the image's first k proposals (rank order); recall@t = share of instances
with best overlap >= t, ABO = mean best overlap. Mask IoU and box IoU are both reported, so
box-only methods can be compared too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from liid_cli import artifacts, masks
from liid_cli.errors import LiidError
from liid_cli.evaluation.labels import annotations_by_image
from liid_cli.evaluation.runs import resolve_ground_truth
from liid_cli.fileio import file_sha256, read_json, write_json
from liid_cli.proposals.store import (
    ImageProposals,
    ProposalStore,
    open_proposals_file,
    proposals_path,
)
from liid_cli.runner import read_manifest

PROPOSAL_COUNTS = (1, 5, 10, 20, 40, 100)
IOU_THRESHOLDS = (0.5, 0.7)
AR_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def best_overlaps(
    truth_rles: list[dict[str, Any]],
    truth_boxes: np.ndarray,
    proposals: ImageProposals,
    counts: list[int],
) -> dict[str, np.ndarray]:
    """Best mask and box IoU of each truth instance among the first k proposals: (counts, G)."""
    best = {
        "mask": np.zeros((len(counts), len(truth_rles))),
        "box": np.zeros((len(counts), len(truth_rles))),
    }
    if not truth_rles or not len(proposals):
        return best
    iou = {
        "mask": masks.iou_matrix(truth_rles, proposals.rles()),
        "box": box_iou(truth_boxes, proposals.boxes),
    }
    for kind, matrix in iou.items():
        running = np.maximum.accumulate(matrix, axis=1)  # best over the first j+1 proposals
        for row, count in enumerate(counts):
            best[kind][row] = running[:, min(count, matrix.shape[1]) - 1]
    return best


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes, (len(first), len(second))."""
    lo = np.maximum(first[:, None, :2], second[None, :, :2])
    hi = np.minimum(first[:, None, 2:], second[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_first = np.prod(first[:, 2:] - first[:, :2], axis=1)
    area_second = np.prod(second[:, 2:] - second[:, :2], axis=1)
    return inter / np.maximum(area_first[:, None] + area_second[None, :] - inter, 1e-9)


def evaluate_proposals(store: ProposalStore, ground_truth: dict[str, Any]) -> dict[str, Any]:
    """Recall@0.5/0.7 and ABO (mask and box) for each proposal count up to the most per image."""
    truth = annotations_by_image(ground_truth)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in ground_truth["images"]}
    most = int(np.diff(store.csr.offsets).max()) if len(store) else 0
    counts = [c for c in PROPOSAL_COUNTS if c < most] + ([most] if most else [])
    collected: dict[str, list[np.ndarray]] = {"mask": [], "box": []}
    for proposals in store:
        annotations = truth.get(proposals.image_id, [])
        if not annotations or not counts:
            continue
        height, width = sizes.get(proposals.image_id, (proposals.height, proposals.width))
        rles = [masks.segmentation_rle(a["segmentation"], height, width) for a in annotations]
        boxes = np.array([masks.box_xyxy(masks.decode(r)) for r in rles]).reshape(-1, 4)
        for kind, values in best_overlaps(rles, boxes, proposals, counts).items():
            collected[kind].append(values)
    num_truth = sum(len(v) for v in truth.values() if v)
    per_count: dict[str, dict[str, float]] = {}
    for row, count in enumerate(counts):
        entry = {}
        for kind, parts in collected.items():
            best = np.concatenate([p[row] for p in parts]) if parts else np.zeros(0)
            # instances on images missing from the proposals file count as not found
            padded = np.concatenate([best, np.zeros(max(num_truth - len(best), 0))])
            for threshold in IOU_THRESHOLDS:
                entry[f"{kind}_recall@{threshold}"] = (
                    float((padded >= threshold).mean()) if num_truth else 0.0
                )
            entry[f"{kind}_AR"] = (
                float(np.mean([(padded >= t).mean() for t in AR_THRESHOLDS])) if num_truth else 0.0
            )
            entry[f"{kind}_ABO"] = float(padded.mean()) if num_truth else 0.0
        per_count[str(count)] = entry
    counts_per_image = np.diff(store.csr.offsets)
    headline = per_count[str(counts[-1])] if counts else {}
    return {
        "num_images": len(store),
        "num_ground_truth": num_truth,
        "mean_proposals_per_image": float(counts_per_image.mean()) if len(store) else 0.0,
        "ABO": headline.get("mask_ABO"),
        "recall@0.5": headline.get("mask_recall@0.5"),
        "recall@0.7": headline.get("mask_recall@0.7"),
        "AR": headline.get("mask_AR"),
        "per_count": per_count,
    }


def evaluate_run_proposals(
    run_dir: Path,
    *,
    proposals: Path | None = None,
    gt: Path | None = None,
    index_path: Path | None = None,
    name: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate the run's proposals (or any proposals.h5); write <run>/eval/<name>/metrics.json."""
    proposals = proposals or proposals_path(run_dir)
    if index_path is None:
        manifest = read_manifest(proposals.parent)
        index_path = Path(manifest["inputs"]["index"]["path"]) if manifest else None
    if index_path is None:
        raise LiidError(f"no data set index for {proposals}: pass --data INDEX.json")
    gt, _ = resolve_ground_truth(gt, index_path, str(proposals))
    name = name or artifacts.EVAL_PROPOSALS
    if "/" in name or name.startswith("."):
        raise LiidError(f"--name {name!r}: use a plain folder name such as `proposals_mcg`")
    started = time.time()
    with open_proposals_file(proposals, file_sha256(index_path)) as store:
        metrics = evaluate_proposals(store, read_json(gt))
    record = {
        "kind": "proposals",
        "name": name,
        "inputs": {
            key: {"path": str(path), "sha256": file_sha256(path)}
            for key, path in (("proposals", proposals), ("ground_truth", gt))
        },
        "metrics": metrics,
        "seconds": round(time.time() - started, 3),
        "finished": time.time(),
    }
    path = artifacts.eval_metrics_path(run_dir, name)
    write_json(path, record)
    return path, record


def proposals_table(metrics: dict[str, Any]) -> Table:
    table = Table(
        title=f"proposal quality ({metrics['num_images']} images, "
        f"{metrics['num_ground_truth']} instances, %)"
    )
    table.add_column("proposals", justify="right")
    columns = [
        f"{kind}_{metric}"
        for kind in ("mask", "box")
        for metric in (*(f"recall@{t}" for t in IOU_THRESHOLDS), "AR", "ABO")
    ]
    for column in columns:
        heading = column.replace("_", " ").replace("recall@0.", "R@.")
        table.add_column(heading, justify="right")
    for count, entry in metrics["per_count"].items():
        table.add_row(count, *(f"{100 * entry[c]:.1f}" for c in columns))
    return table


def print_table(metrics: dict[str, Any], path: Path) -> None:
    console = Console()
    console.print(proposals_table(metrics))
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
