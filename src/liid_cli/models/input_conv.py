"""A trunk's first convolution, widened for inputs beyond RGB (a box channel, a score map).

The first 4-D tensor of a trunk body's state dict is its stem convolution's weight (`conv1` of a
torchvision ResNet, `pretrained_cfg["first_conv"]` of a timm model), so one rule finds it in a live
module and in a saved state dict alike. Extra channels start at zero, which leaves the response of
pretrained weights to the RGB channels unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from liid_cli.errors import LiidError
from liid_cli.models.backbones import Trunk


def first_conv_key(state: Mapping[str, Any], prefix: str = "") -> str:
    """Key of the first convolution weight under `prefix` in a state dict."""
    for key, value in state.items():
        if key.startswith(prefix) and isinstance(value, torch.Tensor) and value.ndim == 4:
            return key
    raise LiidError(f"no convolution weight under {prefix!r} in the state dict")


def widen_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A (out, c, kh, kw) convolution weight taking `in_channels` >= c inputs; new ones are zero."""
    if weight.shape[1] > in_channels:
        raise ValueError(f"cannot narrow {weight.shape[1]} input channels to {in_channels}")
    extra = weight.new_zeros(weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:])
    return torch.cat([weight, extra], dim=1)


def first_conv(trunk: Trunk) -> nn.Conv2d:
    """The convolution that takes the trunk's (normalised) input image."""
    path = first_conv_key(trunk.body.state_dict()).rsplit(".", 1)[0]
    conv = trunk.body.get_submodule(path)
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise LiidError(f"the first weight of this backbone ({path}) is not a plain convolution")
    return conv


def widen_first_conv(trunk: Trunk, in_channels: int, *, pretrained: bool) -> None:
    """Let the trunk take `in_channels` inputs: extra channels start at zero when `pretrained`;
    otherwise the whole weight is drawn anew (Kaiming, as torchvision initialises ResNets)."""
    conv = first_conv(trunk)
    weight = widen_weight(conv.weight.detach(), in_channels)
    if not pretrained:
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
    conv.weight = nn.Parameter(weight)
    conv.in_channels = in_channels
