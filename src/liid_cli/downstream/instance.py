"""Mask R-CNN specifics: losses of a batch, predictions as COCO results, validation metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from liid_cli import masks
from liid_cli.data.index import ClassMap, DatasetIndex
from liid_cli.downstream.instance_data import Target, image_tensor, require_images_on_disk
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.log import track

REPORTED = ("AP", "AP50", "AP75", "ABO")


def compute_losses(
    model: nn.Module, batch: tuple[list[torch.Tensor], list[Target]], device: torch.device
) -> dict[str, torch.Tensor]:
    images, targets = batch
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [
        {key: value.to(device, non_blocking=True) for key, value in t.items()} for t in targets
    ]
    return model(images, targets)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.inference_mode()
def predict_instances(
    model: nn.Module,
    index: DatasetIndex,
    device: torch.device,
    *,
    batch_size: int,
    mask_threshold: float,
    description: str = "predicting",
) -> list[dict[str, Any]]:
    """COCO results (image_id, category_id, RLE segmentation, score, bbox xywh) per index image."""
    model.eval()
    classes = index.classes
    images = index.images
    require_images_on_disk([index.image_path(image) for image in images], index.path)
    results: list[dict[str, Any]] = []
    for chunk in track(list(_batches(images, batch_size)), description):
        tensors = [image_tensor(index.image_path(image)).to(device) for image in chunk]
        outputs = model(tensors)
        for image, output in zip(chunk, outputs):
            results.extend(coco_results(int(image["id"]), output, classes, mask_threshold))
    return results


def coco_results(
    image_id: int, output: dict[str, torch.Tensor], classes: ClassMap, mask_threshold: float
) -> list[dict[str, Any]]:
    """One image's detections as COCO results; masks binarised at `mask_threshold`."""
    binary = (output["masks"][:, 0] >= mask_threshold).cpu().numpy().astype(np.uint8)
    rles = masks.encode_many(binary)
    scores = output["scores"].cpu().tolist()
    labels = output["labels"].cpu().tolist()
    boxes = output["boxes"].cpu().numpy()
    return [
        {
            "image_id": image_id,
            "category_id": classes.to_category(int(label)),
            "segmentation": rle,
            "score": round(float(score), 5),
            "bbox": [round(v, 2) for v in masks.xyxy_to_xywh(box)],
        }
        for rle, score, label, box in zip(rles, scores, labels, boxes)
    ]


def instance_validator(
    val_index: DatasetIndex, ground_truth: Path, *, batch_size: int, mask_threshold: float
) -> Any:
    """A `validate(model, device)` giving AP, AP50, AP75, ABO on the validation split."""

    def validate(model: nn.Module, device: torch.device) -> dict[str, Any]:
        results = predict_instances(
            model,
            val_index,
            device,
            batch_size=batch_size,
            mask_threshold=mask_threshold,
            description="validating",
        )
        summary = evaluate_instances(ground_truth, results)
        return {key: summary[key] for key in REPORTED} | {"num_predictions": len(results)}

    return validate
