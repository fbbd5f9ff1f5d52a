"""Stage `train`: Mask R-CNN on COCO instances (pseudo labels, or ground truth: the upper bound)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liid_cli.checkpoints import seed_everything
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.downstream.instance import compute_losses, instance_validator
from liid_cli.downstream.instance_data import InstanceDataset, collate, load_instance_records
from liid_cli.downstream.models import InstanceModelConfig, build_instance_model
from liid_cli.downstream.trained import describe
from liid_cli.downstream.training import Task, TrainingConfig, fit
from liid_cli.errors import LiidError
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stage_inputs import LABELS, VAL

TASK = "instance"
VALIDATION_BATCH = 4


class TrainConfig(TrainingConfig):
    model: InstanceModelConfig


def validation_index(
    context: StageContext, index: DatasetIndex
) -> tuple[DatasetIndex, Path] | None:
    """The `val` input (an index with ground truth on disk, same classes), if one was given."""
    path = context.input(VAL)
    if path is None:
        return None
    val_index = load_index(path)
    ground_truth = val_index.ground_truth_path
    if ground_truth is None or not ground_truth.is_file():
        raise LiidError(
            f"{path}: this index has no ground truth on disk to validate against; "
            "pass --val with a split that has gt_<split>.json"
        )
    if val_index.classes != index.classes:
        raise LiidError(
            f"{path}: its classes differ from {index.path}'s; "
            "validate on a split of the same data set"
        )
    return val_index, ground_truth


def run(config: TrainConfig, context: StageContext) -> dict[str, Any]:
    """Train Mask R-CNN on the index's images with masks from the `labels` COCO instances json.

    Reads: the index, `labels` (e.g. <run>/export/pseudo_instances.json or gt_train.json), and
    optionally `val` (an index with ground truth) for periodic AP50/AP75/ABO validation.
    Writes: model_best.pt (best val AP50), model_last.pt; resumable state in the cache folder.
    """
    index = load_index(context.index_path)
    records = load_instance_records(index, context.required_input(LABELS))
    validate = None
    validation = validation_index(context, index)
    if validation is not None:
        validate = instance_validator(
            *validation, batch_size=VALIDATION_BATCH, mask_threshold=config.model.mask_threshold
        )
    seed_everything(context.seed)
    model = build_instance_model(config.model, index.classes.num_classes, config.weights)
    task = Task(
        model=model,
        dataset=InstanceDataset(records, config.flip),
        collate=collate,
        compute_losses=compute_losses,
        validate=validate,
        best_metric="AP50",
        description=describe(TASK, config.model.model_dump(mode="json"), index),
    )
    return fit(task, config, context)


SPEC = StageSpec(
    name="train", config_model=TrainConfig, run=run, inputs=(LABELS, VAL)
)
