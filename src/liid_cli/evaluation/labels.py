"""Where pseudo labels go wrong: each proposal's kind against ground truth, and what every labelling
step of the run (CAM pseudo label y~, label-masked MIL argmax, multiway cut, export) makes of it.

A proposal's kind, from its pixels and the image's ground-truth instances (crowd excluded):
- object: mask IoU >= 0.5 with an instance (its class is that instance's);
- background: under 20% of its pixels lie on any instance;
- part: at least 70% of its pixels lie inside one instance;
- superset: it covers at least 70% of an instance's pixels;
- mixed: the rest (straddles instances and background without containing either).
A labelling step is good when objects get their own class and every other kind gets background;
the table shows the share of each kind that a step labels foreground. The exported pseudo
instances get the same kinds, so their breakdown says what Mask R-CNN will be trained on, beside
its ceiling: the object proposals over the exported instances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from liid_cli import artifacts, masks
from liid_cli.data.index import DatasetIndex
from liid_cli.fileio import file_sha256, read_json
from liid_cli.h5store import CsrFile, open_csr
from liid_cli.log import track
from liid_cli.models.losses import pseudo_labels
from liid_cli.proposals.store import open_proposals
from liid_cli.runner import read_manifest

KINDS = ("object", "part", "superset", "mixed", "background")
OBJECT_IOU = 0.5
BACKGROUND_MAX_COVER = 0.2
CONTAINED = 0.7


def annotations_by_image(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Non-crowd annotations of a COCO instances document, grouped by image id."""
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for annotation in coco["annotations"]:
        if not annotation.get("iscrowd", 0):
            grouped[int(annotation["image_id"])].append(annotation)
    return grouped


def region_kinds(
    regions: list[dict[str, Any]], truth: list[dict[str, Any]], truth_classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kind (index into KINDS) of each RLE region and the internal class of its instance (0 for
    background and mixed regions)."""
    kinds = np.full(len(regions), KINDS.index("background"), dtype=np.int64)
    classes = np.zeros(len(regions), dtype=np.int64)
    if not regions or not truth:
        return kinds, classes
    height, width = regions[0]["size"]
    region_pixels = (
        mask_utils.decode([masks.segmentation_rle(r, height, width) for r in regions])
        .reshape(-1, len(regions))
        .astype(np.float32)
    )
    truth_pixels = (
        mask_utils.decode([masks.segmentation_rle(t["segmentation"], height, width) for t in truth])
        .reshape(-1, len(truth))
        .astype(np.float32)
    )
    inter = region_pixels.T @ truth_pixels  # (R, T)
    region_area = np.maximum(region_pixels.sum(axis=0), 1.0)[:, None]
    truth_area = np.maximum(truth_pixels.sum(axis=0), 1.0)[None, :]
    iou = inter / (region_area + truth_area - inter)
    inside = inter / region_area  # share of the region on each instance
    covered = inter / truth_area  # share of each instance under the region
    for row in range(len(regions)):
        if iou[row].max() >= OBJECT_IOU:
            kind, instance = "object", int(iou[row].argmax())
        elif inside[row].sum() < BACKGROUND_MAX_COVER:
            kind, instance = "background", -1
        elif inside[row].max() >= CONTAINED:
            kind, instance = "part", int(inside[row].argmax())
        elif covered[row].max() >= CONTAINED:
            kind, instance = "superset", int(covered[row].argmax())
        else:
            kind, instance = "mixed", -1
        kinds[row] = KINDS.index(kind)
        classes[row] = truth_classes[instance] if instance >= 0 else 0
    return kinds, classes


# A step's labels of one image's proposals: (its open file, image id, label vector) -> classes.
Labeller = Callable[[CsrFile, int, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Step:
    """A per-proposal labelling step: its file, row-aligned with proposals.h5, and how it labels."""

    path: Path
    schema: str
    stage: str
    labels: Labeller


def _cam_labeller(loss: dict[str, Any]) -> Labeller:
    """y~ of train-mil's loss settings (eta, box or mask pooling) from the CAM scores."""
    box = loss["pooling"] == "box"
    column = artifacts.H5_CAM_BOX_SCORES if box else artifacts.H5_CAM_MASK_SCORES

    def labels(file: CsrFile, image_id: int, label_vector: np.ndarray) -> np.ndarray:
        scores = torch.from_numpy(file.read(column, image_id))
        return pseudo_labels(scores, torch.from_numpy(label_vector), loss["eta"]).numpy()

    return labels


def _masked_mil_labels(file: CsrFile, image_id: int, label_vector: np.ndarray) -> np.ndarray:
    """argmax of the MIL probabilities times the image's label vector (what the cut sees)."""
    return (file.read(artifacts.H5_PROBS, image_id) * label_vector).argmax(axis=1)


def _cut_labels(file: CsrFile, image_id: int, label_vector: np.ndarray) -> np.ndarray:
    return file.read(artifacts.H5_LABELS, image_id)


def available_steps(run_dir: Path) -> dict[str, Step]:
    """The labelling steps the run has finished: cam (needs train-mil's eta), mil, cut."""
    steps: dict[str, Step] = {}
    mil_manifest = read_manifest(artifacts.stage_dir(run_dir, "train-mil"))
    cam_path = artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_SCORES_H5
    if mil_manifest is not None and cam_path.is_file():
        steps["cam"] = Step(
            cam_path,
            artifacts.SCHEMA_CAM_SCORES,
            "train-cam",
            _cam_labeller(mil_manifest["config"]["loss"]),
        )
    for step, stage, name, schema, labeller in (
        ("mil", "dump", artifacts.DUMP_H5, artifacts.SCHEMA_DUMP, _masked_mil_labels),
        ("cut", "cut", artifacts.CUT_H5, artifacts.SCHEMA_CUT, _cut_labels),
    ):
        path = artifacts.stage_dir(run_dir, stage) / name
        if path.is_file():
            steps[step] = Step(path, schema, stage, labeller)
    return steps


class _Tally:
    """Counts of regions per kind, and per step the foreground ones and objects of the right class."""

    def __init__(self) -> None:
        self.total = np.zeros(len(KINDS), dtype=np.int64)
        self.foreground: dict[str, np.ndarray] = defaultdict(
            lambda: np.zeros(len(KINDS), dtype=np.int64)
        )
        self.right_class: dict[str, int] = defaultdict(int)

    def add(self, kinds: np.ndarray, classes: np.ndarray, labels: dict[str, np.ndarray]) -> None:
        self.total += np.bincount(kinds, minlength=len(KINDS))
        is_object = kinds == KINDS.index("object")
        for step, predicted in labels.items():
            self.foreground[step] += np.bincount(kinds[predicted > 0], minlength=len(KINDS))
            self.right_class[step] += int((predicted[is_object] == classes[is_object]).sum())

    def kind_shares(self) -> dict[str, float | None]:
        count = self.total.sum()
        return {kind: float(n / count) if count else None for kind, n in zip(KINDS, self.total)}

    def foreground_shares(self, step: str) -> dict[str, float | None]:
        counts = self.foreground[step]
        return {
            kind: float(counts[i] / self.total[i]) if self.total[i] else None
            for i, kind in enumerate(KINDS)
        }


def evaluate_labels(
    run_dir: Path, index: DatasetIndex, ground_truth: dict[str, Any]
) -> dict[str, Any]:
    """Kinds of the run's proposals and of its exported pseudo instances, per labelling step."""
    internal = {cid: index.classes.to_internal(cid) for cid in index.classes.category_ids}
    truth = annotations_by_image(ground_truth)
    steps = available_steps(run_dir)
    export_path = artifacts.stage_dir(run_dir, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    exported = annotations_by_image(read_json(export_path)) if export_path.is_file() else None
    label_vectors = {int(im["id"]): index.classes.label_vector(im["labels"]) for im in index.images}
    fingerprint = file_sha256(index.path)
    proposals_tally, exported_tally = _Tally(), _Tally()
    with ExitStack() as stack:
        files = {
            name: stack.enter_context(open_csr(step.path, step.schema, fingerprint, step.stage))
            for name, step in steps.items()
        }
        store = stack.enter_context(open_proposals(run_dir, index.path))
        for proposals in track(store, "proposal kinds", total=len(store)):
            image_id = proposals.image_id
            image_truth = truth.get(image_id, [])
            truth_classes = np.array([internal[int(t["category_id"])] for t in image_truth])
            kinds, classes = region_kinds(proposals.rles(), image_truth, truth_classes)
            labels = {
                name: step.labels(files[name], image_id, label_vectors[image_id])
                for name, step in steps.items()
            }
            proposals_tally.add(kinds, classes, labels)
            if exported is not None:
                instances = exported.get(image_id, [])
                kinds, classes = region_kinds(
                    [a["segmentation"] for a in instances], image_truth, truth_classes
                )
                given = np.array([internal[int(a["category_id"])] for a in instances], np.int64)
                exported_tally.add(kinds, classes, {"export": given})
    objects = int(proposals_tally.total[KINDS.index("object")])
    metrics: dict[str, Any] = {
        "proposals": int(proposals_tally.total.sum()),
        "proposal_kinds": proposals_tally.kind_shares(),
        "foreground": {name: proposals_tally.foreground_shares(name) for name in steps},
        "objects_right_class": {
            name: proposals_tally.right_class[name] / objects if objects else None
            for name in steps
        },
    }
    if exported is not None:
        count = int(exported_tally.total.sum())
        metrics["exported_instances"] = count
        metrics["exported_kinds"] = exported_tally.kind_shares()
        metrics["exported_right_class"] = (
            exported_tally.right_class["export"] / count if count else None
        )
        # No ranking or labelling of these proposals could export a larger share of whole objects
        # at this number of pseudo instances: it tells a weak pool from a weak export.
        metrics["exported_objects_ceiling"] = min(1.0, objects / count) if count else None
    return metrics
