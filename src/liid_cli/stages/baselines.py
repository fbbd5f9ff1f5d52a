"""`liid baselines`: the simple things people try first, as pseudo labels in export-coco's format,
so that every `liid eval`, `liid train` and `liid viz` command takes them and `liid eval compare`
puts them beside LIID.

- `cam_threshold`: each labelled class's CAM (train-cam's classifier, at its `cam_scale`),
  thresholded at `cam_threshold` x its peak; each connected component covering at least
  `min_area` of the image is an instance, scored by the CAM peak inside it.
- `best_proposal`: for each labelled class, the proposal with the highest CAM score R (mean + max
  of the CAM in its box, train-cam's `cam_box_scores`), scored R / 2.
- `no_graph`: each SOP's best label from the cut's own terminals, class-prior correction and
  label masking (what `liid cut --solver argmax` gives), then export-coco's own settings (score,
  min_score, NMS), read from the run's cut and export-coco manifests.

Reads proposals, train-cam (cam_scores.h5, cam_maps.h5), dump and the cut's and export-coco's configs;
writes `<run>/baselines/<name>/pseudo_instances.json`.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field
from skimage.measure import label as connected_components

from liid_cli import artifacts, masks
from liid_cli.config import StageConfig, recorded_stage_config
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256, read_json, write_json
from liid_cli.graph.build import argmax_labels, edgeless_graph
from liid_cli.graph.dump import DumpData, read_dump
from liid_cli.graph.instance_scores import cam_factors, factored_scores
from liid_cli.h5store import open_csr
from liid_cli.log import track
from liid_cli.models.cam import upsampled_cams
from liid_cli.proposals.cam_scores import read_low_res_cams
from liid_cli.proposals.store import ImageProposals, open_proposals
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stages.cut import CutConfig, cut_terminals
from liid_cli.stages.export_coco import (
    ExportCocoConfig,
    PseudoInstances,
    coco_annotations,
    instances_document,
    select_pseudo_instances,
)

ConfigT = TypeVar("ConfigT", bound=StageConfig)

Baseline = Literal["cam_threshold", "best_proposal", "no_graph"]


class BaselinesConfig(StageConfig):
    methods: list[Baseline] = Field(min_length=1)
    cam_threshold: float = Field(gt=0, lt=1)  # share of the CAM's peak
    min_area: float = Field(ge=0, lt=1)  # share of the image


def no_instances() -> PseudoInstances:
    return PseudoInstances(rles=[], boxes=np.zeros((0, 4), np.float32),
                           labels=np.zeros(0, np.int64), scores=np.zeros(0, np.float32))


def cam_threshold_instances(
    cams: np.ndarray, classes: list[int], threshold: float, min_area: float
) -> PseudoInstances:
    """Connected components of each (H, W) CAM >= threshold (maps max-normalised to 1)."""
    rles, labels, scores = [], [], []
    for cam, k in zip(cams, classes):
        components = connected_components(cam >= threshold, connectivity=2)
        for number in range(1, int(components.max()) + 1):
            region = components == number
            if region.mean() >= min_area:
                rles.append(masks.encode(region))
                labels.append(k + 1)
                scores.append(float(cam[region].max()))
    if not rles:
        return no_instances()
    return PseudoInstances(
        rles=rles,
        boxes=np.stack([masks.box_xyxy(masks.decode(rle)) for rle in rles]).astype(np.float32),
        labels=np.array(labels, dtype=np.int64),
        scores=np.array(scores, dtype=np.float32),
    )


def best_proposal_instances(
    proposals: ImageProposals, box_scores: np.ndarray, classes: list[int]
) -> PseudoInstances:
    """Per labelled class, the proposal with the highest CAM score R in its box."""
    if not len(proposals) or not classes:
        return no_instances()
    rows = [int(box_scores[:, k].argmax()) for k in classes]
    return PseudoInstances(
        rles=[proposals.rle(row) for row in rows],
        boxes=proposals.boxes[rows].astype(np.float32),
        labels=np.array([k + 1 for k in classes], dtype=np.int64),
        scores=np.array([box_scores[row, k] / 2 for row, k in zip(rows, classes)], np.float32),
    )


def _stage_config(stage_dir: Path, model: type[ConfigT]) -> ConfigT:
    """The resolved config a finished stage recorded in its manifest."""
    manifest = read_json(stage_dir / artifacts.MANIFEST)
    return recorded_stage_config(manifest["stage"], model, manifest["config"])


def no_graph_labels(
    cut_dir: Path, dump_dir: Path, fingerprint: str, num_classes: int
) -> tuple[DumpData, np.ndarray]:
    """The dump and every SOP's label without the graph, from the cut's own label masking and
    terminals (what `liid cut --solver argmax` gives)."""
    cut = _stage_config(cut_dir, CutConfig)
    dump = read_dump(dump_dir / artifacts.DUMP_H5, fingerprint, num_classes,
                     label_masking=cut.label_masking)
    weights, allowed = cut_terminals(dump, cut)
    return dump, argmax_labels(edgeless_graph(weights, allowed))


def run(config: BaselinesConfig, context: StageContext) -> dict[str, Any]:
    """Write each baseline's pseudo instances; return their counts."""
    index = load_index(context.index_path)
    fingerprint = file_sha256(context.index_path)
    chosen = list(dict.fromkeys(config.methods))
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    export = (
        _stage_config(context.upstream("export-coco"), ExportCocoConfig)
        if "no_graph" in chosen else None
    )
    dump, sop_labels = None, np.zeros(0, np.int64)
    if export is not None:
        dump, sop_labels = no_graph_labels(context.upstream("cut"), context.upstream("dump"),
                                           fingerprint, index.classes.num_classes)
    dump_rows = {} if dump is None else {
        int(image_id): slice(int(dump.offsets[i]), int(dump.offsets[i + 1]))
        for i, image_id in enumerate(dump.image_ids)
    }
    cam_dir = context.upstream("train-cam")
    with ExitStack() as stack:
        store = stack.enter_context(open_proposals(context.run_dir, context.index_path))
        cam_scores = stack.enter_context(open_csr(
            cam_dir / artifacts.CAM_SCORES_H5, artifacts.SCHEMA_CAM_SCORES, fingerprint, "train-cam"
        ))
        low_res_cams = stack.enter_context(open_csr(
            cam_dir / artifacts.CAM_LOW_RES_H5, artifacts.SCHEMA_CAM_LOW_RES, fingerprint,
            "train-cam",
        )) if "cam_threshold" in chosen else None
        for image in track(index.images, "baselines"):
            proposals = store.get(int(image["id"]))
            classes = index.tagged_classes(image)
            rows = cam_scores.rows_of(proposals.image_id)
            per_method: dict[str, PseudoInstances] = {}
            if low_res_cams is not None:
                # train-cam's kept maps, resized: the numbers its classifier would give again
                cams = upsampled_cams(
                    read_low_res_cams(low_res_cams, proposals.image_id, classes),
                    (proposals.height, proposals.width),
                ).numpy()
                per_method["cam_threshold"] = cam_threshold_instances(
                    cams, classes, config.cam_threshold, config.min_area
                )
            if "best_proposal" in chosen:
                box_scores = cam_scores.rows(artifacts.H5_CAM_BOX_SCORES, rows)
                per_method["best_proposal"] = best_proposal_instances(proposals, box_scores, classes)
            if export is not None and dump is not None:
                per_method["no_graph"] = _no_graph_instances(
                    dump, dump_rows[proposals.image_id], sop_labels, proposals, export,
                    context.device, cam_factors(cam_scores, export.score, rows),
                )
            for name, instances in per_method.items():
                found[name].extend(
                    coco_annotations(image["id"], instances, index.classes, len(found[name]) + 1)
                )
    for name, written in found.items():
        write_json(
            context.out_dir / name / artifacts.PSEUDO_INSTANCES_JSON,
            instances_document(index, written, f"baseline:{name}"),
            indent=None,
        )
    return {name: {"instances": len(written)} for name, written in found.items()}


def _no_graph_instances(
    dump: DumpData,
    rows: slice,
    sop_labels: np.ndarray,
    proposals: ImageProposals,
    export: ExportCocoConfig,
    device: str,
    factors: np.ndarray | None,
) -> PseudoInstances:
    """The image's SOPs with their no-graph labels, exported as export-coco does."""
    labels = sop_labels[rows].astype(np.int64)
    proposal_index = dump.proposal_index[rows].astype(np.int64)
    p = dump.probs[rows][np.arange(len(labels)), labels].astype(np.float32)
    scores = factored_scores(p, labels, proposal_index, factors, export.score)
    return select_pseudo_instances(proposals, proposal_index, labels, scores, export, device)


SPEC = StageSpec(
    name="baselines",
    config_model=BaselinesConfig,
    run=run,
)
