"""The multi-label CAM classifier, its class activation maps, and CAM scores of regions.

The classifier is backbone -> 1x1 convolution with K outputs -> global average pooling, which is
GAP -> FC written so that the same weights give the class activation maps directly. A per-class
bias is added after the pooling, outside the maps: trained from the class's prior log-odds
(`prior_bias`), it holds how rare a class is, so the maps need not be negative everywhere to say
"absent" and stay free to say where a class is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liid_cli.models.backbones import TrunkConfig, trunk_for


class CamClassifier(nn.Module):
    """Backbone + per-class 1x1 convolution; logits are the spatial means of the class maps."""

    def __init__(self, config: TrunkConfig, num_classes: int, weights: str | None = None) -> None:
        super().__init__()
        self.trunk = trunk_for(config, weights)
        self.classifier = nn.Conv2d(self.trunk.channels[-1], num_classes, kernel_size=1, bias=False)
        self.class_bias = nn.Parameter(torch.zeros(num_classes), requires_grad=False)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> raw class maps (B, K, H/stride, W/stride)."""
        return self.classifier(self.trunk(images)[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.class_maps(images).mean(dim=(2, 3)) + self.class_bias

    def head_parameters(self) -> list[nn.Parameter]:
        """The classifier layer's parameters: its 1x1 convolution and the class bias."""
        return [self.classifier.weight, self.class_bias]

    def start_bias_at_priors(self, labels: np.ndarray) -> None:
        """Train the class bias, starting from each class's log-odds among (N, K) multi-hot
        `labels`, clipped to those of 1 in N + 1 images."""
        count = len(labels)
        prior = np.clip(labels.mean(axis=0), 1 / (count + 1), count / (count + 1))
        with torch.no_grad():
            self.class_bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))).float())
        self.class_bias.requires_grad_(True)

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        """Checkpoints written before the class bias existed had none: a zero bias."""
        state = dict(state)
        state.setdefault("class_bias", torch.zeros(self.class_bias.shape))
        return super().load_state_dict(state, strict=strict, assign=assign)


def class_cams(
    model: CamClassifier, image: torch.Tensor, classes: list[int], flip_average: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (K,) of one image and the ReLU'd CAMs of `classes` (0-based) at the network's output
    resolution, (len(classes), h, w) float32. With `flip_average` the maps of the image and of its
    mirror (flipped back) are ReLU'd, then summed."""
    batch = image[None]
    if flip_average:
        batch = torch.cat([batch, batch.flip(-1)])
    all_maps = model.class_maps(batch)
    logits = all_maps[0].mean(dim=(1, 2)) + model.class_bias
    maps = F.relu(all_maps[:, classes].float())
    if flip_average:
        maps = maps[:1] + maps[1:].flip(-1)
    return logits, maps[0]


def upsampled_cams(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`class_cams` maps resized (bilinear) to `size` (H, W), each divided by its peak."""
    if not len(maps):
        return maps.new_zeros((0, *size))
    maps = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-5)
    return maps / peak[:, None, None]


def normalised_cams(
    model: CamClassifier,
    image: torch.Tensor,
    classes: list[int],
    size: tuple[int, int],
    flip_average: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (K,) of one image and its CAMs for `classes` (0-based), ReLU'd and max-normalised,
    at `size` (H, W) (`class_cams`, then `upsampled_cams`)."""
    logits, maps = class_cams(model, image, classes, flip_average)
    return logits, upsampled_cams(maps, size)


def box_regions(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(M, 4) xyxy pixel boxes -> (M, H, W) bool masks of the pixels they cover (at least one)."""
    x0 = np.clip(np.floor(boxes[:, 0]), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, height - 1).astype(np.int64)
    x1 = np.maximum(np.clip(np.ceil(boxes[:, 2]), 0, width).astype(np.int64), x0 + 1)
    y1 = np.maximum(np.clip(np.ceil(boxes[:, 3]), 0, height).astype(np.int64), y0 + 1)
    cols = np.arange(width)
    rows = np.arange(height)
    inside_x = (cols[None] >= x0[:, None]) & (cols[None] < x1[:, None])
    inside_y = (rows[None] >= y0[:, None]) & (rows[None] < y1[:, None])
    return inside_y[:, :, None] & inside_x[:, None, :]


def region_agreement(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """How well each region matches each [0, 1] map: (C, H, W) maps, (M, H, W) regions (bool, or
    the share of each cell a region covers) -> (M, C), the harmonic mean of the map's mean inside
    the region (precision: the region is lit) and the share of the map's mass inside it (coverage:
    the region holds what is lit). A part of a lit object scores low on coverage, a region
    spilling into the background low on precision.
    """
    if len(maps) == 0 or len(regions) == 0:
        return torch.zeros(len(regions), len(maps))
    flat_maps = maps.flatten(1).float()
    flat_regions = regions.flatten(1).float()
    inside = flat_regions @ flat_maps.T  # (M, C) map mass inside each region
    precision = inside / flat_regions.sum(dim=1, keepdim=True).clamp_min(1e-6)
    coverage = inside / flat_maps.sum(dim=1)[None].clamp_min(1e-6)
    return 2 * precision * coverage / (precision + coverage).clamp_min(1e-9)


def region_scores(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """mean + max of each map inside each region: (C, H, W) maps, (M, H, W) regions (bool, or the
    share of each cell a region covers: the mean is weighted by it, the max taken over the cells
    it touches) -> (M, C). An empty region scores 0.
    """
    if len(maps) == 0 or len(regions) == 0:
        return torch.zeros(len(regions), len(maps))
    flat_maps = maps.flatten(1).float()  # (C, P)
    flat_regions = regions.flatten(1).float()  # (M, P)
    area = flat_regions.sum(dim=1, keepdim=True)  # (M, 1)
    mean = (flat_regions @ flat_maps.T) / area.clamp_min(1e-6)
    touched = flat_regions > 0
    # One class at a time keeps memory at M x P (maps are few: the image's labelled classes).
    peak = torch.stack([torch.where(touched, row, -1.0).amax(dim=1) for row in flat_maps], dim=1)
    return torch.where(area > 0, mean + peak, torch.zeros_like(mean))
