"""Downstream model builders from torchvision parts: Mask R-CNN (ResNet-FPN), DeepLabV3 (ResNet).

The settings of a model (`InstanceModelConfig`, `SemanticModelConfig`) are stored in every
checkpoint, so `liid predict` rebuilds exactly the trained architecture. Normalisation is a
setting: frozen BatchNorm suits ImageNet weights; GroupNorm (or trainable BatchNorm) lets a
network trained from scratch learn, which the demo profile needs (no download here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch.nn as nn
import torchvision
from pydantic import Field
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from liid_cli.config import StageConfig
from liid_cli.errors import LiidError
from liid_cli.models.backbones import backbone_spec, resolve_weights

Norm = Literal["frozen_bn", "bn", "gn"]
GROUPS = 32
# Layers a frozen-BN detector keeps fixed (torchvision's default of 3 trainable stages).
FROZEN_STAGES = ("conv1", "layer1")
# Where the ResNet sits in the state dict of a trained Mask R-CNN and DeepLabV3.
MODEL_BACKBONE_PREFIXES = ("backbone.body.", "backbone.")
# Channels of layer1..layer4 for BasicBlock and Bottleneck ResNets.
STAGE_CHANNELS = {512: [64, 128, 256, 512], 2048: [256, 512, 1024, 2048]}


class InstanceModelConfig(StageConfig):
    """Mask R-CNN with a ResNet-FPN backbone."""

    backbone: str
    norm: Norm
    fpn_channels: int = Field(ge=16)
    box_head_size: int = Field(ge=16)
    anchor_sizes: list[int] = Field(min_length=5, max_length=5)  # one per FPN level, P2..P6
    train_sizes: list[int] = Field(
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
    """DeepLabV3 (ASPP head) on a dilated ResNet."""

    backbone: str
    norm: Norm
    output_stride: Literal[8, 16]
    atrous_rates: list[int] = Field(min_length=3, max_length=3)  # ASPP dilations, in feature cells


def norm_layer(norm: Norm) -> Callable[[int], nn.Module]:
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(GROUPS, channels)
    return nn.BatchNorm2d


def build_resnet(name: str, norm: Norm, weights: str, output_stride: int = 32) -> nn.Module:
    """A torchvision ResNet with the chosen normalisation and `--weights` loaded (fc left out)."""
    spec = backbone_spec(name)
    if spec.channels not in STAGE_CHANNELS or not spec.builder.startswith("resnet"):
        raise LiidError(
            f"backbone {name!r} cannot serve Mask R-CNN / DeepLabV3 here; "
            "use resnet18, resnet34, resnet50 or resnet101"
        )
    bottleneck = spec.channels == 2048
    dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[
        output_stride
    ]
    model = getattr(torchvision.models, spec.builder)(
        weights=None,
        norm_layer=norm_layer(norm),
        replace_stride_with_dilation=dilate if bottleneck else None,
    )
    if not bottleneck and output_stride < 32:
        _dilate_basic_resnet(model, output_stride)
    state = resolve_weights(name, weights)
    if state is not None:
        missing, _ = model.load_state_dict(backbone_state(state), strict=False)
        if any(not key.startswith("fc.") for key in missing):
            raise LiidError(f"--weights {weights}: not a {name} state dict (missing {missing[:3]})")
    return model


def backbone_state(state: dict[str, Any]) -> dict[str, Any]:
    """The ResNet part of a state dict: as is, or the backbone of a `liid train` model.

    So `--weights <run>/train/model_best.pt` starts DeepLabV3 from the backbone Mask R-CNN
    learned (or the reverse), which matters when no ImageNet weights are at hand.
    """
    for prefix in MODEL_BACKBONE_PREFIXES:
        if f"{prefix}conv1.weight" in state:
            return {
                key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)
            }
    return state


def _dilate_basic_resnet(model: nn.Module, output_stride: int) -> None:
    """Trade the stride of layer4 (and layer3 for 8) for dilation; BasicBlock ResNets lack it."""
    layers = [model.layer4] if output_stride == 16 else [model.layer3, model.layer4]
    for dilation, layer in enumerate(layers, start=1):
        rate = 2**dilation if output_stride == 8 else 2
        for module in layer.modules():
            if isinstance(module, nn.Conv2d):
                module.stride = (1, 1)
                if module.kernel_size == (3, 3):
                    module.dilation = (rate, rate)
                    module.padding = (rate, rate)


def roi_pool(size: int, canonical_scale: int) -> MultiScaleRoIAlign:
    """RoIAlign over P2-P5, the level chosen by RoI size (small images want a small scale)."""
    return MultiScaleRoIAlign(
        ["0", "1", "2", "3"], size, sampling_ratio=2, canonical_scale=canonical_scale
    )


def build_instance_model(config: InstanceModelConfig, num_classes: int, weights: str) -> MaskRCNN:
    """Mask R-CNN for `num_classes` object classes (background added) on a ResNet-FPN."""
    resnet = build_resnet(config.backbone, config.norm, weights)
    if config.norm == "frozen_bn" and weights != "none":
        for name, parameter in resnet.named_parameters():
            if name.startswith(FROZEN_STAGES):
                parameter.requires_grad_(False)
    head_norm = norm_layer("gn") if config.norm == "gn" else None
    channels = config.fpn_channels
    mask_channels = config.mask_head_channels
    backbone = BackboneWithFPN(
        resnet,
        {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        STAGE_CHANNELS[backbone_spec(config.backbone).channels],
        channels,
        norm_layer=head_norm,
    )
    anchors = AnchorGenerator(
        tuple((size,) for size in config.anchor_sizes), ((0.5, 1.0, 2.0),) * 5
    )
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=tuple(sorted(config.train_sizes)),
        max_size=config.max_size,
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
    resnet = build_resnet(config.backbone, config.norm, weights, config.output_stride)
    backbone = torchvision.models._utils.IntermediateLayerGetter(resnet, {"layer4": "out"})
    return DeepLabV3(
        backbone,
        DeepLabHead(backbone_spec(config.backbone).channels, num_classes + 1, config.atrous_rates),
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
