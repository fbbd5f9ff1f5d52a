"""The segmentation network shared by box-to-mask (binary) and the rounds' semantic FCN.

An encoder-decoder from torchvision parts: a ResNet trunk (torchvision's, or a slim one built from
its BasicBlock) and a feature-pyramid decoder that fuses strides 32..4 and predicts at stride 4.
The first convolution is `input_conv`, so the input channel count is easy to check and widen.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from liid_cli.errors import LiidError
from liid_cli.models.backbones import resolve_weights

OUTPUT_STRIDE = 4
IMAGE_AND_BOX = 4  # box-to-mask input channels without a score map; 5 with one
BOX2MASK_OUTPUTS = 2  # background, foreground
INPUT_CONV_KEY = "input_conv.weight"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SLIM_WIDTHS = (32, 64, 128, 256)
TORCHVISION_ENCODERS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
}
ENCODERS = (*TORCHVISION_ENCODERS, "slim")


def _slim_stage(in_width: int, out_width: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_width != out_width:
        downsample = nn.Sequential(
            nn.Conv2d(in_width, out_width, 1, stride, bias=False), nn.BatchNorm2d(out_width)
        )
    return nn.Sequential(BasicBlock(in_width, out_width, stride, downsample))


def _build_encoder(
    name: str, in_channels: int, weights: str
) -> tuple[nn.Conv2d, nn.Sequential, nn.ModuleList, tuple[int, ...]]:
    """(first conv, rest of the stem, the four stages at strides 4..32, their widths)."""
    if name == "slim":
        if weights != "none":
            raise LiidError(
                f"encoder 'slim' has no pretrained weights; set weights=none (got {weights!r})"
            )
        first = SLIM_WIDTHS[0]
        input_conv = nn.Conv2d(in_channels, first, 7, 2, 3, bias=False)
        stem = nn.Sequential(nn.BatchNorm2d(first), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        widths = (first, *SLIM_WIDTHS)
        stages = nn.ModuleList(
            _slim_stage(widths[i], widths[i + 1], 1 if i == 0 else 2) for i in range(4)
        )
        return input_conv, stem, stages, SLIM_WIDTHS
    if name not in TORCHVISION_ENCODERS:
        raise LiidError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    import torchvision

    resnet = getattr(torchvision.models, name)(weights=None)
    state = resolve_weights(name, weights)
    if state is not None:
        missing, _ = resnet.load_state_dict(state, strict=False)
        if any(not key.startswith("fc.") for key in missing):
            raise LiidError(f"weights {weights}: not a {name} state dict (missing {missing[:3]})")
    input_conv = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    with torch.no_grad():
        input_conv.weight.zero_()
        input_conv.weight[:, :3] = resnet.conv1.weight
        if state is None:
            nn.init.kaiming_normal_(input_conv.weight, mode="fan_out", nonlinearity="relu")
    stem = nn.Sequential(resnet.bn1, resnet.relu, resnet.maxpool)
    stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
    return input_conv, stem, stages, TORCHVISION_ENCODERS[name]


class SegmentationNet(nn.Module):
    """Encoder + top-down decoder; logits (N, num_outputs, H/4, W/4)."""

    def __init__(
        self,
        *,
        encoder: str,
        in_channels: int,
        num_outputs: int,
        decoder_channels: int,
        weights: str = "none",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.input_conv, self.stem, self.stages, widths = _build_encoder(
            encoder, in_channels, weights
        )
        self.laterals = nn.ModuleList(nn.Conv2d(width, decoder_channels, 1) for width in widths)
        self.fuse = nn.Sequential(
            nn.Conv2d(decoder_channels, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(decoder_channels, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(decoder_channels, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.input_conv(x))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        y = self.laterals[-1](features[-1])
        for lateral, feature in zip(reversed(self.laterals[:-1]), reversed(features[:-1])):
            y = F.interpolate(y, size=feature.shape[-2:], mode="bilinear", align_corners=False)
            y = y + lateral(feature)
        return self.head(self.fuse(y))


def build_box2mask_net(
    config: dict[str, Any], in_channels: int, weights: str = "none"
) -> SegmentationNet:
    """The binary segmenter described by a train-box2mask config (`encoder`, `decoder_channels`)."""
    return SegmentationNet(
        encoder=config["encoder"],
        in_channels=in_channels,
        num_outputs=BOX2MASK_OUTPUTS,
        decoder_channels=config["decoder_channels"],
        weights=weights,
    )


def input_channels_of(state: dict[str, Any]) -> int:
    """Input channel count of a saved SegmentationNet state dict."""
    return int(state[INPUT_CONV_KEY].shape[1])


def widen_input(state: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """The same weights taking `in_channels` inputs; new channels start at zero (no effect)."""
    weight = state[INPUT_CONV_KEY]
    if weight.shape[1] > in_channels:
        raise ValueError(f"cannot narrow {weight.shape[1]} input channels to {in_channels}")
    extra = weight.new_zeros(weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:])
    return {**state, INPUT_CONV_KEY: torch.cat([weight, extra], dim=1)}


def normalise_rgb(image: torch.Tensor) -> torch.Tensor:
    """uint8/float (..., 3, H, W) in 0..255 -> ImageNet-normalised float."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std
