"""A run folder with a known answer for export-coco, from a data set's ground truth: proposals,
CAM agreements and a finished cut written through the runner. Shared by
`benchmarks/bench_export_eval.py` and `tests/stages/test_export.py` (benchmarks run as scripts and
must not import tests, so the fixture lives here)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from liid_cli import artifacts, masks
from liid_cli.config import StageConfig
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256, read_json
from liid_cli.h5store import write_csr
from liid_cli.proposals.store import ImageProposals, write_proposals
from liid_cli.runner import StageContext, StageSpec, run_stage

TRUE_SCORE, DUPLICATE_SCORE, NOISE_SCORE = 0.9, 0.6, 0.8


class NoConfig(StageConfig):
    pass


def make_cut_run(
    index_path: Path,
    run_dir: Path,
    *,
    solver: str = "multiway",
    agreement: tuple[float, float] = (1.0, 1.0),
) -> dict[str, Any]:
    """Write <run>/proposals, <run>/cam (CAM agreements: `agreement` for the objects and their
    shifted copies, in their label's column) and <run>/cut (with manifests); return the known
    export answer when the agreements keep the objects first.

    Per image: each ground-truth object that has no same-class box overlap above 0.3 with an earlier
    one (score 0.9), a copy shifted by 2 px (score 0.6, removed by NMS), and two noise boxes
    labelled 0. The first object of the data set is always left out (one the cut missed), so the
    answer never equals the full ground truth.
    """
    index = load_index(index_path)
    gt = read_json(index.ground_truth_path)
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in index.images}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    fingerprint = file_sha256(index_path)
    truth_annotations: list[dict[str, Any]] = []
    all_proposals: list[ImageProposals] = []
    cut_rows: dict[str, list[np.ndarray]] = {"labels": [], "scores": [], "proposal_index": []}
    agreement_rows: list[np.ndarray] = []
    first_object = gt["annotations"][0]["id"]
    for image in index.images:
        height, width = image["height"], image["width"]
        kept = [a for a in _separable(by_image[image["id"]]) if a["id"] != first_object]
        truth_annotations.extend(kept)
        objects = (
            np.stack([masks.decode(a["segmentation"]) for a in kept])
            if kept
            else np.zeros((0, height, width), bool)
        )
        duplicates = np.zeros_like(objects)
        duplicates[:, :, 2:] = objects[:, :, :-2]
        noise = np.zeros((2, height, width), dtype=bool)
        noise[0, :10, :10] = True
        noise[1, -12:, -20:] = True
        stack = np.concatenate([objects, duplicates, noise])
        all_proposals.append(
            ImageProposals.from_masks(image["id"], stack, np.linspace(1, 0.5, len(stack)))
        )
        labels = [index.classes.to_internal(a["category_id"]) for a in kept]
        cut_rows["labels"].append(np.array([*labels, *labels, 0, 0], dtype=np.int32))
        cut_rows["scores"].append(
            np.array(
                [TRUE_SCORE] * len(kept) + [DUPLICATE_SCORE] * len(kept) + [NOISE_SCORE] * 2,
                dtype=np.float32,
            )
        )
        cut_rows["proposal_index"].append(np.arange(len(stack), dtype=np.int32))
        table = np.zeros((len(stack), index.classes.num_classes), dtype=np.float32)
        for row, label in enumerate(labels):
            table[row, label - 1] = agreement[0]
            table[len(kept) + row, label - 1] = agreement[1]
        agreement_rows.append(table)

    def write_proposal_stage(config: NoConfig, context: StageContext) -> dict[str, Any]:
        write_proposals(context.out_dir / artifacts.PROPOSALS_H5, fingerprint, all_proposals)
        return {}

    def write_cam_stage(config: NoConfig, context: StageContext) -> dict[str, Any]:
        table = np.concatenate(agreement_rows)
        write_csr(
            context.out_dir / artifacts.CAM_SCORES_H5,
            schema=artifacts.SCHEMA_CAM_SCORES,
            fingerprint=fingerprint,
            image_ids=np.array([im["id"] for im in index.images]),
            counts=np.array([len(rows) for rows in agreement_rows]),
            rows={
                artifacts.H5_CAM_BOX_SCORES: np.zeros_like(table),
                artifacts.H5_CAM_MASK_SCORES: np.zeros_like(table),
                artifacts.H5_CAM_MASK_AGREEMENT: table,
            },
        )
        return {}

    def write_nothing(config: NoConfig, context: StageContext) -> dict[str, Any]:
        return {}

    def write_cut_stage(config: NoConfig, context: StageContext) -> dict[str, Any]:
        counts = np.array([len(rows) for rows in cut_rows["labels"]])
        write_csr(
            context.out_dir / artifacts.CUT_H5,
            schema=artifacts.SCHEMA_CUT,
            fingerprint=fingerprint,
            image_ids=np.array([im["id"] for im in index.images]),
            counts=counts,
            rows={name: np.concatenate(rows) for name, rows in cut_rows.items()}
            | {artifacts.H5_COMPONENT: np.zeros(int(counts.sum()), dtype=np.int32)},
            attrs={"solver": solver, "energy": 0.0, "lower_bound": 0.0, "gap": 0.0},
        )
        return {}

    for name, stage_run in (
        ("proposals", write_proposal_stage),
        ("train-cam", write_cam_stage),
        ("train-mil", write_nothing),
        ("dump", write_nothing),
        ("cut", write_cut_stage),
    ):
        run_stage(
            StageSpec(name=name, config_model=NoConfig, run=stage_run),
            NoConfig(),
            run_dir=run_dir,
            index_path=index_path,
            force=True,
        )
    for placeholder in ("train-mil", "dump"):  # only there because the registry has cut read dump
        shutil.rmtree(artifacts.stage_dir(run_dir, placeholder))
    return dict(gt, annotations=truth_annotations)


def _separable(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    for ann in annotations:
        box = torch.from_numpy(masks.box_xyxy(masks.decode(ann["segmentation"])))[None]
        same_class = [k for k in kept if k["category_id"] == ann["category_id"]]
        if same_class:
            others = torch.tensor(
                np.stack([masks.box_xyxy(masks.decode(k["segmentation"])) for k in same_class])
            )
            if box_iou(box, others).max() > 0.3:
                continue
        kept.append(ann)
    return kept
