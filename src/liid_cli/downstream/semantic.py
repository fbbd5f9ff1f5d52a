"""DeepLabV3 specifics: the loss of a batch, label-map predictions, mIoU validation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liid_cli.data.index import DatasetIndex
from liid_cli.downstream.instance_data import image_tensor
from liid_cli.downstream.semantic_data import SemanticRecord, read_label_map
from liid_cli.evaluation.semantic import evaluate_semantic
from liid_cli.log import track
from liid_cli.palette import IGNORE_LABEL

BACKGROUND = "background"


def compute_losses(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> dict[str, torch.Tensor]:
    images, labels = batch
    logits = model(images.to(device, non_blocking=True))["out"]
    return {
        "loss_ce": F.cross_entropy(
            logits.float(), labels.to(device, non_blocking=True), ignore_index=IGNORE_LABEL
        )
    }


@torch.inference_mode()
def predict_label_maps(
    model: nn.Module,
    images: list[tuple[str, Any]],
    device: torch.device,
    *,
    flip_test: bool,
    description: str = "predicting",
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, uint8 label map) per (name, image path); `flip_test` averages in the mirrored view."""
    model.eval()
    for name, path in track(images, description):
        image = image_tensor(path)[None].to(device)
        scores = model(image)["out"].softmax(dim=1)
        if flip_test:
            scores = scores + model(image.flip(-1))["out"].softmax(dim=1).flip(-1)
        yield name, scores[0].argmax(dim=0).to(torch.uint8).cpu().numpy()


def semantic_validator(val_index: DatasetIndex, records: list[SemanticRecord]) -> Any:
    """A `validate(model, device)` giving mIoU and pixel accuracy on the validation split."""
    names = [BACKGROUND, *val_index.classes.names]

    def validate(model: nn.Module, device: torch.device) -> dict[str, Any]:
        predictions = predict_label_maps(
            model,
            [(r.name, r.path) for r in records],
            device,
            flip_test=False,
            description="validating",
        )
        pairs = (
            (read_label_map(record, val_index), label_map)
            for record, (_, label_map) in zip(records, predictions)
        )
        summary = evaluate_semantic(pairs, names)
        return {
            "mIoU": summary["mIoU"],
            "pixel_accuracy": summary["pixel_accuracy"],
            "per_class": summary["per_class"],
        }

    return validate
