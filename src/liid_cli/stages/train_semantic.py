"""Stage `train-semantic`: DeepLabV3 on label maps (exported palette PNGs, or COCO instances)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from liid_cli.checkpoints import seed_everything
from liid_cli.config import Positive
from liid_cli.data.index import load_index
from liid_cli.downstream.models import SemanticModelConfig, build_semantic_model
from liid_cli.downstream.semantic import compute_losses, semantic_validator
from liid_cli.downstream.semantic_data import SemanticDataset, load_semantic_records
from liid_cli.downstream.trained import describe
from liid_cli.downstream.training import Task, TrainingConfig, fit
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stage_inputs import LABELS, VAL
from liid_cli.stages.train import validation_index

TASK = "semantic"


class TrainSemanticConfig(TrainingConfig):
    model: SemanticModelConfig
    crop_size: int = Field(ge=16)
    scale_range: tuple[Positive, Positive]


def run(config: TrainSemanticConfig, context: StageContext) -> dict[str, Any]:
    """Train DeepLabV3 with cross-entropy (255 ignored) on the index's images.

    Reads: the index, `labels` (a folder of <image name>.png palette PNGs such as
    <run>/export/semantic/, or a COCO instances json painted into label maps), and optionally
    `val` (an index with ground truth) for mIoU validation.
    Writes: model_best.pt (best val mIoU), model_last.pt; resumable state in the cache folder.
    """
    index = load_index(context.index_path)
    records = load_semantic_records(index, context.required_input(LABELS), annotated_only=True)
    validate = None
    validation = validation_index(context, index)
    if validation is not None:
        val_index, ground_truth = validation
        validate = semantic_validator(
            val_index, load_semantic_records(val_index, ground_truth, annotated_only=False)
        )
    seed_everything(context.seed)
    model = build_semantic_model(config.model, index.classes.num_classes, config.weights)
    dataset = SemanticDataset(records, index, config.crop_size, config.scale_range, config.flip)
    task = Task(
        model=model,
        dataset=dataset,
        collate=None,
        compute_losses=compute_losses,
        validate=validate,
        best_metric="mIoU",
        description=describe(TASK, config.model.model_dump(mode="json"), index),
    )
    return fit(task, config, context)


SPEC = StageSpec(
    name="train-semantic",
    config_model=TrainSemanticConfig,
    run=run,
    inputs=(LABELS, VAL),
)
