"""Stage `predict-semantic`: a trained DeepLabV3 over the images of an index -> palette PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from liid_cli import artifacts
from liid_cli.config import StageConfig
from liid_cli.data.index import load_index
from liid_cli.downstream.instance_data import require_images_on_disk
from liid_cli.downstream.models import SemanticModelConfig, build_semantic_model
from liid_cli.downstream.semantic import BACKGROUND, predict_label_maps
from liid_cli.downstream.semantic_data import load_semantic_records, read_label_map
from liid_cli.downstream.trained import load_trained
from liid_cli.evaluation.semantic import evaluate_semantic, read_prediction_maps
from liid_cli.palette import save_label_png
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stage_inputs import TRAINED_MODEL
from liid_cli.stages.predict import ground_truth_metrics


class PredictSemanticConfig(StageConfig):
    flip_test: bool  # average the scores of the image and its mirror


def run(config: PredictSemanticConfig, context: StageContext) -> dict[str, Any]:
    """Run the `model` checkpoint over every image of the index.

    Writes semantic/<image name>.png: palette PNGs of class ids (0 = background), the input of
    `liid eval semantic`. When the index has ground truth, the manifest also records mIoU.
    """
    index = load_index(context.index_path)
    model_path = context.required_input(TRAINED_MODEL)
    checkpoint = load_trained(model_path, "semantic", index)
    model_config = SemanticModelConfig.model_validate(checkpoint["model_config"])
    model = build_semantic_model(model_config, index.classes.num_classes, "none")
    model.load_state_dict(checkpoint["model"])
    device = torch.device(context.device)
    images = [(image["name"], index.image_path(image)) for image in index.images]
    require_images_on_disk([path for _, path in images], index.path)
    folder = context.out_dir / artifacts.SEMANTIC_DIR
    folder.mkdir()
    for name, label_map in predict_label_maps(
        model.to(device), images, device, flip_test=config.flip_test
    ):
        save_label_png(folder / f"{name}.png", label_map)

    def evaluate(ground_truth: Path) -> dict[str, Any]:
        records = load_semantic_records(index, ground_truth, annotated_only=False)
        truths = (read_label_map(record, index) for record in records)
        predictions = read_prediction_maps(folder, [record.name for record in records])
        summary = evaluate_semantic(zip(truths, predictions), [BACKGROUND, *index.classes.names])
        return {"mIoU": summary["mIoU"], "pixel_accuracy": summary["pixel_accuracy"]}

    return {
        "model": str(model_path),
        "model_epoch": checkpoint["epoch"],
        "num_images": len(images),
        "ground_truth": ground_truth_metrics(index.ground_truth_path, evaluate),
    }


SPEC = StageSpec(
    name="predict-semantic",
    config_model=PredictSemanticConfig,
    run=run,
    inputs=(TRAINED_MODEL,),
)
