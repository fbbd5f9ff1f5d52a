"""Stage 6, `liid export-coco`: the cut's labelled SOPs -> COCO instance and semantic pseudo labels.

Reads `<run>/cut/cut.h5` and `<run>/proposals/proposals.h5`; writes
`<run>/export/pseudo_instances.json` (COCO instances, RLE masks with scores) and
`<run>/export/semantic/<image name>.png` (VOC palette PNGs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torchvision.ops import batched_nms

from liid_cli import artifacts, masks
from liid_cli.config import Probability, StageConfig
from liid_cli.data.index import ClassMap, DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.evaluation.semantic import label_map_from_instances
from liid_cli.fileio import file_sha256, write_json
from liid_cli.graph.instance_scores import (
    ScoreName,
    check_proposal_rows,
    cut_neighbours,
    neighbour_scores,
    own_scores,
)
from liid_cli.h5store import CsrFile, open_csr
from liid_cli.log import track
from liid_cli.palette import IGNORE_LABEL, save_label_png
from liid_cli.proposals.store import ImageProposals, ProposalStore, open_proposals
from liid_cli.runner import StageContext, StageSpec


class ExportCocoConfig(StageConfig):
    min_score: Probability
    nms_iou: Probability
    nms_overlap: Literal["box", "mask"]
    max_per_class: int = Field(ge=0)
    score: ScoreName
    neighbour_weight: float = Field(ge=0.0, le=1.0)
    semantic_overlap: Literal["ignore", "highest_score"]


@dataclass(frozen=True)
class PseudoInstances:
    """The surviving SOPs of one image, best score first."""

    rles: list[dict[str, Any]]
    boxes: np.ndarray  # float32 (M, 4) xyxy
    labels: np.ndarray  # int64 (M,), internal ids 1..K
    scores: np.ndarray  # float32 (M,)


def select_instances(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    min_score: float,
    nms_iou: float,
    device: str = "cpu",
    rles: list[dict[str, Any]] | None = None,
    max_per_class: int = 0,
) -> np.ndarray:
    """Rows kept: label > 0, score >= min_score, then NMS per class, by the masks' IoU where
    `rles` are given, else by the boxes', then the best `max_per_class` of each class (0: all);
    best score first."""
    candidates = np.flatnonzero((labels > 0) & (scores >= min_score))
    if len(candidates) == 0:
        return candidates
    if rles is not None:
        chosen = [rles[row] for row in candidates]
        kept = candidates[masks.mask_nms(chosen, scores[candidates], labels[candidates], nms_iou)]
    else:
        order = batched_nms(
            torch.as_tensor(boxes[candidates], dtype=torch.float32, device=device),
            torch.as_tensor(scores[candidates], dtype=torch.float32, device=device),
            torch.as_tensor(labels[candidates], dtype=torch.int64, device=device),
            nms_iou,
        )
        kept = candidates[order.cpu().numpy()]
    if max_per_class == 0:
        return kept
    taken: Counter[int] = Counter()
    capped = []
    for row in kept:
        taken[int(labels[row])] += 1
        if taken[int(labels[row])] <= max_per_class:
            capped.append(row)
    return np.asarray(capped, dtype=kept.dtype)


@dataclass(frozen=True)
class SopColumns:
    """The cut's SOPs in cut.h5 row order: label, proposal row, own score (min_score and NMS)
    and ranking (the survivors' scores)."""

    labels: np.ndarray
    proposal_index: np.ndarray
    scores: np.ndarray
    ranking: np.ndarray


def image_instances(
    cut: CsrFile,
    proposals: ImageProposals,
    config: ExportCocoConfig,
    device: str,
    sops: SopColumns,
) -> PseudoInstances:
    """The image's pseudo instances from its rows of the cut's SOPs."""
    rows = cut.rows_of(proposals.image_id)
    proposal_index = sops.proposal_index[rows]
    check_proposal_rows(cut, proposals.image_id, proposal_index, len(proposals))
    return select_pseudo_instances(
        proposals, proposal_index, sops.labels[rows], sops.scores[rows], config, device,
        sops.ranking[rows],
    )


def select_pseudo_instances(
    proposals: ImageProposals,
    proposal_index: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    config: ExportCocoConfig,
    device: str,
    ranking: np.ndarray | None = None,
) -> PseudoInstances:
    """Labelled SOPs (proposal rows, labels, scores) -> the image's pseudo instances: min_score and
    NMS use `scores`; the survivors are scored (their AP ranking) by `ranking` where given."""
    boxes = proposals.boxes[proposal_index] if len(proposal_index) else np.zeros((0, 4), np.float32)
    ranking = scores if ranking is None else ranking
    rles = [proposals.rle(int(row)) for row in proposal_index]
    keep = select_instances(
        boxes, scores, labels, min_score=config.min_score, nms_iou=config.nms_iou, device=device,
        rles=rles if config.nms_overlap == "mask" else None, max_per_class=config.max_per_class,
    )
    return PseudoInstances(
        rles=[rles[row] for row in keep],
        boxes=boxes[keep],
        labels=labels[keep],
        scores=ranking[keep].astype(np.float32),
    )


def coco_annotations(
    image_id: int, instances: PseudoInstances, classes: ClassMap, first_id: int
) -> list[dict[str, Any]]:
    """COCO annotations of one image; internal ids become category ids only here (via ClassMap)."""
    annotations = []
    for offset, (rle, label, score) in enumerate(
        zip(instances.rles, instances.labels, instances.scores, strict=True)
    ):
        mask_box = masks.box_xyxy(masks.decode(rle))
        annotations.append(
            {
                "id": first_id + offset,
                "image_id": int(image_id),
                "category_id": classes.to_category(int(label)),
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"]},
                "area": masks.area(rle),
                "bbox": masks.xyxy_to_xywh(mask_box),
                "iscrowd": 0,
                "score": float(score),
            }
        )
    return annotations


def semantic_map(instances: PseudoInstances, height: int, width: int, overlap: str) -> np.ndarray:
    if overlap == "ignore":
        return label_map_from_instances(
            instances.rles, instances.labels.tolist(), height, width, IGNORE_LABEL
        )
    # The later instance wins an overlap, so the highest score paints last.
    ascending = np.argsort(instances.scores, kind="stable")
    return label_map_from_instances(
        [instances.rles[i] for i in ascending],
        instances.labels[ascending].tolist(),
        height,
        width,
        None,
    )


def instances_document(
    index: DatasetIndex, annotations: list[dict[str, Any]], solver: str
) -> dict[str, Any]:
    return {
        "info": {"description": "liid pseudo labels", "index": str(index.path), "solver": solver},
        "images": [
            {
                "id": im["id"],
                "file_name": im["file_name"],
                "width": im["width"],
                "height": im["height"],
                "name": im["name"],
            }
            for im in index.images
        ],
        "categories": [
            {"id": c["id"], "name": c["name"], "supercategory": c.get("supercategory", "")}
            for c in index.categories
        ],
        "annotations": annotations,
    }


def run(config: ExportCocoConfig, context: StageContext) -> dict[str, Any]:
    """Drop noise SOPs, NMS per image and class, write the COCO json and the palette PNGs."""
    index = load_index(context.index_path)
    classes = index.classes
    semantic_dir = context.out_dir / artifacts.SEMANTIC_DIR
    semantic_dir.mkdir()
    cut_path = context.upstream("cut") / artifacts.CUT_H5
    annotations: list[dict[str, Any]] = []
    per_class: Counter[str] = Counter()
    empty_images = 0
    fingerprint = file_sha256(context.index_path)
    with (
        open_csr(cut_path, artifacts.SCHEMA_CUT, fingerprint, "cut") as cut,
        open_proposals(context.run_dir, context.index_path) as store,
        _cam_scores(context, config, fingerprint) as cam_scores,
    ):
        solver = str(cut.attrs.get("solver", "unknown"))
        labels = cut.column(artifacts.H5_LABELS).astype(np.int64)
        proposal_index = cut.column(artifacts.H5_PROPOSAL_INDEX).astype(np.int64)
        labelled_sops = int((labels > 0).sum())
        scores = own_scores(cut, labels, proposal_index, cam_scores, config.score)
        ranking = neighbour_scores(
            scores, labels, cut_neighbours(cut, len(labels)), config.neighbour_weight
        )
        sops = SopColumns(labels, proposal_index, scores, ranking)
        for image in track(index.images, "export"):
            proposals = _image_proposals(store, image)
            instances = image_instances(cut, proposals, config, context.device, sops)
            annotations.extend(
                coco_annotations(image["id"], instances, classes, len(annotations) + 1)
            )
            per_class.update(classes.names[label - 1] for label in instances.labels.tolist())
            empty_images += len(instances.labels) == 0
            label_map = semantic_map(
                instances, proposals.height, proposals.width, config.semantic_overlap
            )
            save_label_png(semantic_dir / f"{image['name']}.png", label_map)
    write_json(
        context.out_dir / artifacts.PSEUDO_INSTANCES_JSON,
        instances_document(index, annotations, solver),
        indent=None,
    )
    return {
        "images": len(index.images),
        "labelled_sops": labelled_sops,
        "instances": len(annotations),
        "images_without_instances": empty_images,
        "instances_per_class": {name: per_class.get(name, 0) for name in classes.names},
        "solver": solver,
    }


@contextmanager
def _cam_scores(
    context: StageContext, config: ExportCocoConfig, fingerprint: str
) -> Iterator[CsrFile | None]:
    """train-cam's CAM scores when the score uses them (rows aligned with proposals.h5)."""
    if config.score == "p":
        yield None
        return
    path = context.upstream("train-cam") / artifacts.CAM_SCORES_H5
    with open_csr(path, artifacts.SCHEMA_CAM_SCORES, fingerprint, "train-cam") as cams:
        yield cams


def _image_proposals(store: ProposalStore, image: dict[str, Any]) -> ImageProposals:
    proposals = store.get(int(image["id"]))
    if (proposals.height, proposals.width) != (int(image["height"]), int(image["width"])):
        raise LiidError(
            f"proposals.h5: image {image['name']!r} is {proposals.height}x{proposals.width} "
            "but the index "
            f"says {image['height']}x{image['width']}; rerun `liid proposals --force`"
        )
    return proposals


SPEC = StageSpec(
    name="export-coco", config_model=ExportCocoConfig, run=run
)
