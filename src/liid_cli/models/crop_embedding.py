"""ImageNet embeddings of proposal boxes: each box's crop, squared, through a pretrained classifier
without its last layer. The dump stores them (`crop_features`) for the kNN whose neighbours vote
in export-coco's scores: the MIL network's RoI features make poorer neighbours there
(docs/results.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from liid_cli.models.backbones import TORCHVISION_RESNETS, build_classifier, image_to_tensor

CROPS_PER_BATCH = 256


def build_embedder(name: str, weights: str) -> nn.Module:
    """The ImageNet classifier `name` with its last layer removed: pooled features out."""
    classifier = build_classifier(name, weights)
    model = classifier.model
    if name in TORCHVISION_RESNETS:
        model.fc = nn.Identity()
    else:
        model.reset_classifier(0)
    return classifier.eval()


def box_crops(image: np.ndarray, boxes: np.ndarray, side: int) -> torch.Tensor:
    """(M, 3, side, side) crops of uint8 (H, W, 3) `image` under xyxy pixel `boxes`, each at least
    one pixel and clipped to the image."""
    height, width = image.shape[:2]
    crops = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64):
        left = int(np.clip(np.floor(x0), 0, width - 1))
        top = int(np.clip(np.floor(y0), 0, height - 1))
        right = max(int(np.clip(np.ceil(x1), 0, width)), left + 1)
        bottom = max(int(np.clip(np.ceil(y1), 0, height)), top + 1)
        crops.append(image_to_tensor(np.ascontiguousarray(image[top:bottom, left:right]), side))
    return torch.stack(crops) if crops else torch.zeros((0, 3, side, side))


@torch.no_grad()
def embed_boxes(
    embedder: nn.Module, image: np.ndarray, boxes: np.ndarray, side: int, device: str
) -> np.ndarray:
    """float32 (M, D) embeddings of the image's boxes."""
    crops = box_crops(image, boxes, side)
    parts = [
        embedder(crops[start : start + CROPS_PER_BATCH].to(device)).float().cpu()
        for start in range(0, len(crops), CROPS_PER_BATCH)
    ]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 0), dtype=np.float32)
