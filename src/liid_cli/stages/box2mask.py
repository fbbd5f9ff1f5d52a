"""Stage `box2mask`: pseudo instance masks from the boxes of a target data set.

method `learned` applies a `liid train-box2mask` model (optionally for several alternating rounds
with a semantic FCN's score maps); `rect`, `ellipse` and `grabcut` are the baselines.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from liid_cli import artifacts
from liid_cli.box2mask import pseudo
from liid_cli.box2mask.baselines import BASELINES
from liid_cli.box2mask.data import TargetBox, choose_target_classes, load_target_boxes
from liid_cli.box2mask.inference import (
    Box2MaskModel,
    box2mask_source_classes,
    foreground_probabilities,
    load_box2mask,
    masks_from_probabilities,
    seen_classes,
)
from liid_cli.box2mask.rounds import run_round
from liid_cli.box2mask.training import ScoreMaps, image_key
from liid_cli.checkpoints import seed_everything
from liid_cli.config import StageConfig
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.evaluation.box_masks import evaluate_against_ground_truth
from liid_cli.log import log
from liid_cli.runner import StageContext, StageInput, StageSpec

MODEL = StageInput("model", "a box-to-mask checkpoint: pass --model BOX2MASK.pt")
BOXES = StageInput("boxes", "a COCO json of boxes: pass --boxes BOXES.json")
TARGETS_OF = StageInput(
    "targets_of", "a box-to-mask checkpoint whose unseen classes to label: pass --targets-of"
)


class SemanticSettings(StageConfig):
    encoder: str  # a timm model name, or resnet18/34/50/101 (torchvision)
    weights: str  # imagenet | none | PATH
    decoder_channels: PositiveInt
    input_size: Annotated[int, Field(ge=32, multiple_of=32)]
    iterations: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    momentum: Annotated[float, Field(ge=0, lt=1)]
    weight_decay: NonNegativeFloat
    checkpoint_every: PositiveInt


class Box2MaskConfig(StageConfig):
    method: Literal["learned", "rect", "ellipse", "grabcut"]
    target_classes: list[str] | None  # class names to label; null: every class not seen in training
    allow_seen_classes: bool
    threshold: Annotated[float, Field(gt=0, lt=1)]
    clip_to_box: bool
    rounds: PositiveInt
    retrain_iterations: PositiveInt  # box-to-mask iterations in each later round
    retrain_lr: PositiveFloat  # its Adam learning rate (it starts from the previous round's weights)
    # chance that a training crop's score map is zeroed
    score_dropout: Annotated[float, Field(ge=0, le=1)]
    semantic: SemanticSettings


def _learned_labeller(
    model: Box2MaskModel,
    config: Box2MaskConfig,
    scores: ScoreMaps | None,
    index: DatasetIndex,
    names: dict[int, str],
) -> pseudo.Labeller:
    def label(
        image: dict[str, Any], pixels: np.ndarray, targets: list[TargetBox]
    ) -> tuple[np.ndarray, ...]:
        boxes = np.array([t.box for t in targets], dtype=np.float32)
        maps = None
        if scores is not None:
            path = image_key(index.image_path(image))
            maps = np.stack([scores[(path, names[t.category_id])] for t in targets]).astype(
                np.float32
            )
        probabilities = foreground_probabilities(model, pixels, boxes, maps)
        return masks_from_probabilities(
            probabilities, boxes, threshold=config.threshold, clip_to_box=config.clip_to_box
        )

    return label


def _baseline_labeller(method: str) -> pseudo.Labeller:
    def label(
        image: dict[str, Any], pixels: np.ndarray, targets: list[TargetBox]
    ) -> tuple[np.ndarray, ...]:
        object_masks = BASELINES[method](
            pixels, np.array([t.box for t in targets], dtype=np.float32)
        )
        empty = ~object_masks.any(axis=(1, 2))
        object_masks[empty] = BASELINES["rect"](pixels, np.array([t.box for t in targets])[empty])
        return object_masks, np.ones(len(targets), dtype=np.float32), empty

    return label


def _load_model(config: Box2MaskConfig, context: StageContext) -> Box2MaskModel | None:
    if config.method != "learned":
        if config.rounds > 1:
            raise LiidError(
                f"--rounds {config.rounds} needs the learned model; drop --baseline or --rounds"
            )
        return None
    path = context.input(MODEL)
    if path is None:
        raise LiidError("method learned needs a model: pass --model BOX2MASK.pt")
    model = load_box2mask(path, context.device)
    if model.uses_score_map:
        raise LiidError(
            f"{path} takes a class score map ({model.in_channels} input channels), which "
            "only a round of --rounds provides; start from a `liid train-box2mask` model (4 channels)"
        )
    return model


def _round_metrics(
    annotations: list[dict[str, Any]], fell_back: int, index: DatasetIndex, target_ids: list[int]
) -> dict[str, Any]:
    metrics: dict[str, Any] = {"pseudo_masks": len(annotations), "fell_back_to_box": fell_back}
    gt_path = index.ground_truth_path
    if gt_path is not None and gt_path.is_file() and annotations:
        metrics["ground_truth_eval"] = evaluate_against_ground_truth(
            gt_path, annotations, target_ids
        )
    return metrics


def run(config: Box2MaskConfig, context: StageContext) -> dict[str, Any]:
    """Read the target index (`--data`), its boxes or `--boxes`, the model (`--model`) and which
    model's unseen classes to label (`--targets-of`, else target_classes or every unseen class); write
    pseudo_instances.json and semantic/*.png (and rounds/round_<r>/ when rounds > 1)."""
    seed_everything(context.seed)
    index = load_index(context.index_path)
    model = _load_model(config, context)
    all_boxes, report = load_target_boxes(index, context.input(BOXES))
    if report.clipped or report.empty:
        log.warning(
            f"boxes: {report.clipped} clipped to their image, {report.empty} empty and skipped "
            f"(of {report.read}; e.g. {'; '.join(report.examples)})"
        )
    source_classes = list(model.source_classes) if model else []
    names = {int(c["id"]): str(c["name"]) for c in index.categories}
    requested = config.target_classes
    targets_of = context.input(TARGETS_OF)
    if targets_of is not None:
        if requested is not None:
            raise LiidError("pass either --targets-of or target_classes, not both")
        unseen_by = set(box2mask_source_classes(targets_of))
        requested = [name for name in names.values() if name not in unseen_by]
    targets = choose_target_classes(
        list(names.values()),
        source_classes,
        requested,
        config.allow_seen_classes,
        str(index.path),
    )
    target_ids = [cid for cid, name in names.items() if name in targets]
    boxes = {i: [b for b in bs if b.category_id in target_ids] for i, bs in all_boxes.items()}
    unlabelled = {
        i: [b for b in bs if b.category_id not in target_ids] for i, bs in all_boxes.items()
    }
    skipped = Counter(names[b.category_id] for bs in unlabelled.values() for b in bs)
    if skipped:
        log.info(f"not labelled (not target classes): {dict(sorted(skipped.items()))}")
    seen = seen_classes(model, targets) if model else []
    if seen:
        log.warning(
            f"labelling classes the model saw masks of: {seen}; this run is NOT weakly supervised"
        )

    rounds_dir = context.out_dir / artifacts.BOX2MASK_ROUNDS_DIR
    labeller = (
        _learned_labeller(model, config, None, index, names)
        if model
        else _baseline_labeller(config.method)
    )
    annotations, fell_back = pseudo.label_boxes(
        index, boxes, labeller, f"box2mask ({config.method})"
    )
    rounds = [{"round": 1, **_round_metrics(annotations, fell_back, index, target_ids)}]
    for number in range(2, config.rounds + 1):
        if number == 2:
            pseudo.write_document(
                rounds_dir / artifacts.BOX2MASK_ROUND_DIR.format(round=1),
                index,
                annotations,
                f"{config.method}, round 1",
            )
        assert model is not None  # _load_model refuses rounds without a model
        folder = rounds_dir / artifacts.BOX2MASK_ROUND_DIR.format(round=number)
        model, scores, losses = run_round(
            number,
            model,
            index,
            annotations,
            all_boxes,
            boxes,
            config.model_dump(mode="json"),
            context=context,
            folder=folder,
        )
        labeller = _learned_labeller(model, config, scores, index, names)
        annotations, fell_back = pseudo.label_boxes(
            index, boxes, labeller, f"box2mask round {number}"
        )
        rounds.append(
            {"round": number, **losses, **_round_metrics(annotations, fell_back, index, target_ids)}
        )
        pseudo.write_document(folder, index, annotations, f"{config.method}, round {number}")
    pseudo.write_document(context.out_dir, index, annotations, config.method)
    pseudo.write_semantic_pngs(
        context.out_dir / artifacts.SEMANTIC_DIR, index, annotations, unlabelled
    )
    for entry in rounds:
        if "ground_truth_eval" in entry:
            quality = entry["ground_truth_eval"]
            log.info(
                f"round {entry['round']}: target-class mIoU {quality['mIoU']:.3f}, "
                f"AP50 {quality['AP50']:.3f}, AP75 {quality['AP75']:.3f} (measured against ground truth)"
            )
    return {
        "method": config.method,
        "weakly_supervised": not seen,
        "seen_classes_labelled": seen,
        "source_classes": source_classes,
        "target_classes": targets,
        "model": str(model.path) if model else None,
        "boxes": {
            "read": report.read,
            "clipped": report.clipped,
            "empty_skipped": report.empty,
            "not_target_class": sum(skipped.values()),
            "labelled": len(annotations),
        },
        "rounds": rounds,
        "final": rounds[-1],
    }


SPEC = StageSpec(
    name="box2mask",
    config_model=Box2MaskConfig,
    run=run,
    inputs=(MODEL, BOXES, TARGETS_OF),
)
