"""Downstream models on a trunk of the backbone factory: Mask R-CNN (FPN) and DeepLabV3.

The settings of a model (`InstanceModelConfig`, `SemanticModelConfig`) are stored in every
checkpoint, so `liid predict` rebuilds exactly the trained architecture. The backbone is any timm
model name or a torchvision ResNet; the models take images in [0, 1] and the trunk normalises
them with its weights' statistics. Frozen BatchNorm suits pretrained weights; GroupNorm (or
trainable BatchNorm) lets a network trained from scratch learn.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from liid_cli.config import Count, StageConfig
from liid_cli.models.backbones import Trunk, build_trunk, freeze_levels
from liid_cli.models.resnet_trunk import Norm, norm_layer

FPN_LEVELS = (1, 2, 3, 4)  # strides 4..32: P2-P5, and P6 by max pooling
# Levels a frozen-BN detector keeps fixed with pretrained weights: the stem and level 1 (conv1
# and layer1 of a ResNet, torchvision's default of three trainable stages).
FROZEN_LEVELS = 2
# The trunk normalises, so Mask R-CNN's own transform must leave [0, 1] images as they are.
IDENTITY_MEAN = (0.0, 0.0, 0.0)
IDENTITY_STD = (1.0, 1.0, 1.0)


class InstanceModelConfig(StageConfig):
    """Mask R-CNN with an FPN over a backbone (a timm model name, or resnet18/34/50/101)."""

    backbone: str
    norm: Norm
    fpn_channels: int = Field(ge=16)
    box_head_size: int = Field(ge=16)
    anchor_sizes: list[Count] = Field(min_length=5, max_length=5)  # one per FPN level, P2..P6
    train_sizes: list[Count] = Field(
        min_length=1
    )  # shorter side, one drawn per batch; the largest is the test size
    max_size: int = Field(ge=32)
    rpn_pre_nms_train: int = Field(ge=1)
    rpn_post_nms_train: int = Field(ge=1)
    rpn_pre_nms_test: int = Field(ge=1)
    rpn_post_nms_test: int = Field(ge=1)
    box_batch_size_per_image: int = Field(ge=1)
    # An RoI of this side (pixels, after resizing) is pooled from P4, twice as large from P5...
    roi_canonical_scale: int = Field(ge=8)
    mask_head_channels: int = Field(ge=8)
    mask_head_layers: int = Field(ge=1)
    score_threshold: float = Field(ge=0.0, le=1.0)  # detections below are dropped
    mask_threshold: float = Field(gt=0.0, lt=1.0)  # soft mask -> binary mask
    detections_per_image: int = Field(ge=1)


class SemanticModelConfig(StageConfig):
    """DeepLabV3 (ASPP head) on a dilated backbone (a timm model name, or resnet18/34/50/101)."""

    backbone: str
    norm: Norm
    output_stride: Literal[8, 16]
    atrous_rates: list[Count] = Field(min_length=3, max_length=3)  # ASPP dilations, in feature cells


class TrunkWithFPN(nn.Module):
    """FPN over a trunk's levels 1..4: {"0".."3": P2-P5, "pool": P6}, as Mask R-CNN expects."""

    def __init__(
        self, trunk: Trunk, channels: int, norm: Callable[[int], nn.Module] | None
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.fpn = FeaturePyramidNetwork(
            list(trunk.channels), channels, extra_blocks=LastLevelMaxPool(), norm_layer=norm
        )
        self.out_channels = channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.trunk(images)
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(features)))


class TrunkOut(nn.Module):
    """A trunk's last level as DeepLabV3 wants its backbone's output: {"out": features}."""

    def __init__(self, trunk: Trunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.trunk(images)[-1]}


def roi_pool(size: int, canonical_scale: int) -> MultiScaleRoIAlign:
    """RoIAlign over P2-P5, the level chosen by RoI size (small images want a small scale)."""
    return MultiScaleRoIAlign(
        ["0", "1", "2", "3"], size, sampling_ratio=2, canonical_scale=canonical_scale
    )


def build_instance_model(config: InstanceModelConfig, num_classes: int, weights: str) -> MaskRCNN:
    """Mask R-CNN for `num_classes` object classes (background added) on an FPN backbone."""
    trunk = build_trunk(config.backbone, weights, FPN_LEVELS, 32, config.norm)
    if config.norm == "frozen_bn" and weights != "none":
        freeze_levels(trunk, FROZEN_LEVELS)
    head_norm = norm_layer("gn") if config.norm == "gn" else None
    channels = config.fpn_channels
    mask_channels = config.mask_head_channels
    anchors = AnchorGenerator(
        tuple((size,) for size in config.anchor_sizes), ((0.5, 1.0, 2.0),) * 5
    )
    return MaskRCNN(
        TrunkWithFPN(trunk, channels, head_norm),
        num_classes=None,
        min_size=tuple(sorted(config.train_sizes)),
        max_size=config.max_size,
        image_mean=IDENTITY_MEAN,
        image_std=IDENTITY_STD,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, 3),
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_test,
        box_roi_pool=roi_pool(7, config.roi_canonical_scale),
        box_head=TwoMLPHead(channels * 7 * 7, config.box_head_size),
        box_predictor=FastRCNNPredictor(config.box_head_size, num_classes + 1),
        box_batch_size_per_image=config.box_batch_size_per_image,
        box_score_thresh=config.score_threshold,
        box_detections_per_img=config.detections_per_image,
        mask_roi_pool=roi_pool(14, config.roi_canonical_scale),
        mask_head=MaskRCNNHeads(
            channels, [mask_channels] * config.mask_head_layers, 1, norm_layer=head_norm
        ),
        mask_predictor=MaskRCNNPredictor(mask_channels, mask_channels, num_classes + 1),
    )


def build_semantic_model(config: SemanticModelConfig, num_classes: int, weights: str) -> DeepLabV3:
    """DeepLabV3 for `num_classes` object classes plus background; forward gives {"out": logits}."""
    trunk = build_trunk(config.backbone, weights, (4,), config.output_stride, config.norm)
    return DeepLabV3(
        TrunkOut(trunk), DeepLabHead(trunk.channels[-1], num_classes + 1, config.atrous_rates)
    )
