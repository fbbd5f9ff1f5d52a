"""Stage `predict`: a trained Mask R-CNN over the images of an index -> COCO results json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from liid_cli import artifacts
from liid_cli.config import StageConfig
from liid_cli.data.index import load_index
from liid_cli.downstream.instance import REPORTED, predict_instances
from liid_cli.downstream.models import InstanceModelConfig, build_instance_model
from liid_cli.downstream.trained import load_trained
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.fileio import write_json
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stage_inputs import TRAINED_MODEL


class PredictConfig(StageConfig):
    batch_size: int = Field(ge=1)


def ground_truth_metrics(index_gt: Path | None, evaluate: Any) -> dict[str, Any] | None:
    """Metrics against the index's ground truth when it has one on disk (else None)."""
    if index_gt is None or not index_gt.is_file():
        return None
    return evaluate(index_gt)


def run(config: PredictConfig, context: StageContext) -> dict[str, Any]:
    """Run the `model` checkpoint over every image of the index.

    Writes predictions.json: a COCO results list (image_id, category_id, RLE segmentation, score,
    bbox xywh), the input of `liid eval instances`. When the index has ground truth, the manifest
    also records AP, AP50, AP75 and ABO.
    """
    index = load_index(context.index_path)
    model_path = context.required_input(TRAINED_MODEL)
    checkpoint = load_trained(model_path, "instance", index)
    model_config = InstanceModelConfig.model_validate(checkpoint["model_config"])
    model = build_instance_model(model_config, index.classes.num_classes, "none")
    model.load_state_dict(checkpoint["model"])
    device = torch.device(context.device)
    results = predict_instances(
        model.to(device),
        index,
        device,
        batch_size=config.batch_size,
        mask_threshold=model_config.mask_threshold,
    )
    write_json(context.out_dir / artifacts.PREDICTIONS_JSON, results, indent=None)

    def evaluate(ground_truth: Path) -> dict[str, Any]:
        summary = evaluate_instances(ground_truth, results)
        return {key: summary[key] for key in REPORTED}

    return {
        "model": str(model_path),
        "model_epoch": checkpoint["epoch"],
        "num_images": len(index.images),
        "num_predictions": len(results),
        "ground_truth": ground_truth_metrics(index.ground_truth_path, evaluate),
    }


SPEC = StageSpec(
    name="predict", config_model=PredictConfig, run=run, inputs=(TRAINED_MODEL,)
)
