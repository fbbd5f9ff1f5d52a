"""The segmentation network shared by box-to-mask (binary) and the rounds' semantic FCN.

An encoder-decoder: a trunk from the backbone factory (any timm model name, or a torchvision
ResNet) at strides 4..32, its first convolution widened to take the box channel (and the score
map), and a feature-pyramid decoder that fuses strides 32..4 and predicts at stride 4. Inputs are
the RGB crop in [0, 1] plus those channels; the trunk normalises the RGB part itself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from liid_cli.models.backbones import build_trunk
from liid_cli.models.input_conv import first_conv_key, widen_first_conv, widen_weight

OUTPUT_STRIDE = 4
IMAGE_AND_BOX = 4  # box-to-mask input channels without a score map; 5 with one
BOX2MASK_OUTPUTS = 2  # background, foreground
ENCODER_BODY = "encoder.body."  # where the trunk's layers sit in a SegmentationNet state dict
RGB = 3


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
        self.encoder = build_trunk(encoder, weights, levels=(1, 2, 3, 4), output_stride=32)
        if in_channels != RGB:
            widen_first_conv(self.encoder, in_channels, pretrained=weights != "none")
        self.laterals = nn.ModuleList(
            nn.Conv2d(width, decoder_channels, 1) for width in self.encoder.channels
        )
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
        features = self.encoder(x)
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
    return int(state[first_conv_key(state, ENCODER_BODY)].shape[1])


def widen_input(state: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """The same weights taking `in_channels` inputs; new channels start at zero (no effect)."""
    key = first_conv_key(state, ENCODER_BODY)
    return {**state, key: widen_weight(state[key], in_channels)}
