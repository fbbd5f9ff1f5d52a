"""SegNet1 of the alternating scheme: a small semantic FCN trained on pseudo (and source) masks.

Its softmax score map of an object's class is box-to-mask's fifth input channel in later rounds.
It is the same encoder-decoder as box-to-mask with K+1 outputs, trained on whole images resized
to a square (`input_size`) with SGD and momentum, as the paper trains its DeepLab SegNet1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from liid_cli import masks
from liid_cli.box2mask.network import SegmentationNet
from liid_cli.box2mask.training import cached_rgb, fit
from liid_cli.palette import IGNORE_LABEL
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext


@dataclass(frozen=True)
class LabelledImage:
    """An image and what it teaches: instance masks with class ids (1..C) and boxes to ignore."""

    path: Path
    height: int
    width: int
    instances: tuple[tuple[dict[str, Any], int], ...]
    ignore_boxes: tuple[tuple[float, float, float, float], ...] = ()


def label_map(image: LabelledImage) -> np.ndarray:
    """uint8 (H, W): 0 background, class ids on instances (smaller drawn last), 255 in ignored boxes."""
    labels = np.zeros((image.height, image.width), dtype=np.uint8)
    for x0, y0, x1, y1 in image.ignore_boxes:
        labels[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = IGNORE_LABEL
    decoded = [(masks.decode(rle), class_id) for rle, class_id in image.instances]
    for mask, class_id in sorted(decoded, key=lambda pair: -int(pair[0].sum())):
        labels[mask] = class_id
    return labels


def _resized_image(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]; the network's trunk normalises."""
    return F.interpolate(
        cached_rgb(path)[None].float() / 255.0,
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )[0]


class SemanticDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Whole images and label maps resized to input_size x input_size, random horizontal flip."""

    def __init__(self, images: list[LabelledImage], input_size: int) -> None:
        self.images = images
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[item]
        pixels = _resized_image(image.path, self.input_size)
        labels = torch.from_numpy(label_map(image))[None, None].float()
        labels = F.interpolate(labels, size=(self.input_size, self.input_size), mode="nearest")[
            0, 0
        ].long()
        if torch.rand(()) < 0.5:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        return pixels, labels


def build_semantic_net(settings: dict[str, Any], num_classes: int) -> SegmentationNet:
    return SegmentationNet(
        encoder=settings["encoder"],
        in_channels=3,
        num_outputs=num_classes + 1,
        decoder_channels=settings["decoder_channels"],
        weights=settings["weights"],
    )


def train_semantic(
    images: list[LabelledImage],
    num_classes: int,
    settings: dict[str, Any],
    *,
    context: StageContext,
    resume_point: ResumePoint,
) -> tuple[SegmentationNet, float]:
    """Train the FCN with pixel-wise cross-entropy (255 ignored); return it and its final loss."""
    net = build_semantic_net(settings, num_classes)

    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            model.parameters(),
            lr=settings["lr"],
            momentum=settings["momentum"],
            weight_decay=settings["weight_decay"],
        )

    loss = fit(
        net,
        SemanticDataset(images, settings["input_size"]),
        make_optimizer=sgd,
        iterations=settings["iterations"],
        batch_size=settings["batch_size"],
        context=context,
        resume_point=resume_point,
        checkpoint_every=settings["checkpoint_every"],
    )
    return net, loss


@torch.no_grad()
def score_maps(net: SegmentationNet, image: LabelledImage, input_size: int) -> np.ndarray:
    """(C+1, H, W) float32 softmax of the FCN over the image at its own size."""
    device = next(net.parameters()).device
    logits = net(_resized_image(image.path, input_size)[None].to(device))
    logits = F.interpolate(
        logits, size=(image.height, image.width), mode="bilinear", align_corners=False
    )
    return torch.softmax(logits, dim=1)[0].cpu().numpy()
