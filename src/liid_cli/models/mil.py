"""The MIL network (spec, Stage 3), its training samples and its combined loss.

backbone -> RoIAlign / RoIPool of each proposal box -> global average pooling -> feature f
(D = backbone channels, 2048 for ResNet-50) -> one FC layer with K+1 outputs -> softmax.

RoIPool is torchvision.ops.roi_pool. RoIAlign followed by the average over its bins is linear in
the feature map and separable in y and x, so `roi_align_mean` computes it as one weighted sum per
box; it equals torchvision.ops.roi_align(aligned=True, sampling_ratio=2) + mean (tested), without
torchvision's slow CPU backward, which took a third of a training step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torchvision.ops import roi_pool

from liid_cli.config import StageConfig
from liid_cli.data.images import read_rgb
from liid_cli.models import losses
from liid_cli.models.backbones import TrunkConfig, image_to_tensor, input_size_of, trunk_for


class LossConfig(StageConfig):
    """Which losses are on and their settings; each Table-8 ablation is one override of these."""

    attention: bool
    mil: bool
    centre: bool
    alpha: float = Field(ge=0)
    beta: float = Field(ge=0)
    gamma: float = Field(ge=0)
    eta: float = Field(ge=0)
    r: float = Field(gt=0)
    theta: float = Field(gt=0, le=1)
    pooling: Literal["box", "mask"]  # region of the CAM score R in L_Att


class MilNetwork(nn.Module):
    def __init__(
        self,
        trunk: TrunkConfig,
        num_classes: int,
        roi_op: Literal["align", "pool"],
        roi_size: int,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        self.trunk = trunk_for(trunk, weights)
        self.feature_dim = self.trunk.channels[-1]
        self.spatial_scale = 1.0 / self.trunk.stride
        self.roi_op = roi_op
        self.roi_size = roi_size
        self.classifier = nn.Linear(self.feature_dim, num_classes + 1)

    def forward(
        self, images: torch.Tensor, boxes: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) images and one (M_b, 4) xyxy box tensor per image (input pixels) ->
        logits (sum M_b, K+1) and features (sum M_b, D), in box order."""
        feature_map = self.trunk(images)[-1]
        boxes = [b.to(feature_map.dtype) for b in boxes]
        if self.roi_op == "align":
            features = torch.cat(
                [
                    roi_align_mean(fmap, b, self.roi_size, self.spatial_scale)
                    for fmap, b in zip(feature_map, boxes)
                ]
            )
        else:
            features = roi_pool(
                feature_map, boxes, self.roi_size, spatial_scale=self.spatial_scale
            ).mean(dim=(2, 3))
        return self.classifier(features), features


SAMPLING_RATIO = 2  # bilinear samples per RoIAlign bin and axis


def _axis_weights(
    start: torch.Tensor, end: torch.Tensor, length: int, samples: int
) -> torch.Tensor:
    """(M, length) mean bilinear weight of each cell over `samples` evenly spaced points in [start, end),
    with torchvision's RoIAlign border rules (points beyond one cell outside count as zero)."""
    step = (end - start)[:, None] / samples
    points = (
        start[:, None]
        + (torch.arange(samples, device=start.device, dtype=start.dtype) + 0.5) * step
    )
    valid = ((points >= -1.0) & (points <= length)).to(start.dtype)
    points = points.clamp_min(0.0)
    low = points.floor().long()
    at_edge = low >= length - 1
    low = torch.where(at_edge, torch.full_like(low, length - 1), low)
    high = torch.where(at_edge, low, low + 1)
    fraction = torch.where(at_edge, torch.zeros_like(points), points - low.to(points.dtype))
    weights = torch.zeros(len(start), samples, length, device=start.device, dtype=start.dtype)
    weights.scatter_add_(2, low[..., None], ((1.0 - fraction) * valid)[..., None])
    weights.scatter_add_(2, high[..., None], (fraction * valid)[..., None])
    return weights.mean(dim=1)


def roi_align_mean(
    feature_map: torch.Tensor, boxes: torch.Tensor, output_size: int, spatial_scale: float
) -> torch.Tensor:
    """(C, H, W) map, (M, 4) xyxy input-pixel boxes -> (M, C): the mean of RoIAlign's output bins."""
    channels, height, width = feature_map.shape
    scaled = boxes * spatial_scale - 0.5  # aligned=True: pixel centres at half-integers
    samples = output_size * SAMPLING_RATIO
    along_y = _axis_weights(scaled[:, 1], scaled[:, 3], height, samples)
    along_x = _axis_weights(scaled[:, 0], scaled[:, 2], width, samples)
    weights = (along_y[:, :, None] * along_x[:, None, :]).flatten(1)  # (M, H*W)
    return weights @ feature_map.reshape(channels, -1).T


class ClassCentres(nn.Module):
    """The centres c_k of L_Cent (one per class, background included); moved by EMA, no gradient."""

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.register_buffer("centres", torch.zeros(num_classes + 1, feature_dim))
        self.register_buffer("known", torch.zeros(num_classes + 1, dtype=torch.bool))


@dataclass
class ImageLosses:
    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    assigned: torch.Tensor  # argmax class of each proposal, for the centre update


def image_losses(
    logits: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    cam_scores: torch.Tensor,
    centres: ClassCentres,
    config: LossConfig,
) -> ImageLosses:
    """alpha L_Att + beta L_MIL + gamma L_Cent for one image's proposals (switched-off terms omitted)."""
    probs = logits.float().softmax(dim=1)
    features = features.float()
    assigned = probs.argmax(dim=1).detach()
    parts: dict[str, torch.Tensor] = {}
    total = probs.new_zeros(())
    if config.attention:
        targets = losses.pseudo_labels(cam_scores, labels, config.eta)
        parts["att"] = losses.attention_loss(probs, targets)
        total = total + config.alpha * parts["att"]
    if config.mil:
        parts["mil"] = losses.mil_loss(probs, labels, config.r)
        total = total + config.beta * parts["mil"]
    if config.centre:
        parts["cent"] = losses.centre_loss(features, assigned, centres.centres, centres.known)
        total = total + config.gamma * parts["cent"]
    return ImageLosses(total, parts, assigned)


@dataclass(frozen=True)
class ProposalImage:
    """What the MIL network needs of one training image (boxes in original pixels)."""

    image_id: int
    path: Path
    labels: np.ndarray  # (K+1,) label vector
    boxes: np.ndarray  # (M, 4) xyxy
    cam_scores: np.ndarray  # (M, K) CAM scores R of the chosen pooling; (M, 0) when not needed


class ProposalDataset(torch.utils.data.Dataset):
    """Images resized to the input (a square, or its area with `keep_aspect`) with their boxes
    scaled to it; optional horizontal flip."""

    def __init__(
        self,
        items: list[ProposalImage],
        input_size: int,
        flip: bool,
        reader: Callable[[Path], np.ndarray] = read_rgb,
        keep_aspect: bool = False,
    ) -> None:
        self.items = items
        self.input_size = input_size
        self.flip = flip
        self.keep_aspect = keep_aspect
        self.reader = reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> dict[str, torch.Tensor | int]:
        item = self.items[position]
        image = self.reader(item.path)
        height, width = image.shape[:2]
        size_h, size_w = input_size_of(height, width, self.input_size, self.keep_aspect)
        scale = np.array([size_w / width, size_h / height] * 2, dtype=np.float32)
        boxes = torch.from_numpy(item.boxes.astype(np.float32) * scale)
        tensor = image_to_tensor(image, (size_h, size_w))
        if self.flip and torch.rand(()) < 0.5:
            tensor = tensor.flip(-1)
            boxes = torch.stack(
                [size_w - boxes[:, 2], boxes[:, 1], size_w - boxes[:, 0], boxes[:, 3]], dim=1
            )
        return {
            "image": tensor,
            "boxes": boxes,
            "labels": torch.from_numpy(item.labels),
            "cam_scores": torch.from_numpy(item.cam_scores),
            "image_id": item.image_id,
            "position": position,
        }


def single_item(batch: list[dict[str, torch.Tensor | int]]) -> dict[str, torch.Tensor | int]:
    """DataLoader collate for one image per mini-batch (the spec's setting)."""
    return batch[0]


def stack_items(batch: list[dict[str, torch.Tensor | int]]) -> dict[str, object]:
    """DataLoader collate for inference: lists of images (their sizes may differ) and boxes."""
    return {
        "image": [b["image"] for b in batch],
        "boxes": [b["boxes"] for b in batch],
        "image_id": [b["image_id"] for b in batch],
        "position": [b["position"] for b in batch],
    }
