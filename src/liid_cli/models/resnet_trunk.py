"""torchvision's ResNets as trunks: feature maps at levels 0..4 with torchvision's parameter names
kept (so a trunk's state dict loads into torchvision's model and back), dilation for output
stride 16 / 8 (BasicBlock ResNets included), and the normalisation layer as a setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

Norm = Literal["frozen_bn", "bn", "gn"]
GROUPS = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DILATION = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}


class ResNetLevels(nn.Module):
    """A torchvision ResNet's feature maps at the requested levels, torchvision's names kept."""

    LEVEL_MODULES = ("relu", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, resnet: nn.Module, levels: Sequence[int]) -> None:
        super().__init__()
        self.levels = tuple(levels)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            if name in ("layer2", "layer3", "layer4") and int(name[-1]) > max(levels):
                break
            self.add_module(name, getattr(resnet, name))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(images)))
        found = {0: x}
        x = self.maxpool(x)
        for level in range(1, max(self.levels) + 1):
            x = getattr(self, f"layer{level}")(x)
            found[level] = x
        return [found[level] for level in self.levels]


def norm_layer(norm: Norm) -> Any:
    from torchvision.ops.misc import FrozenBatchNorm2d

    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(GROUPS, channels)
    return nn.BatchNorm2d


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


def resnet_levels(
    name: str, levels: Sequence[int], output_stride: int, norm: Norm
) -> tuple[nn.Module, list[int]]:
    """A torchvision ResNet (random weights) giving `levels`, and their channel counts."""
    import torchvision

    bottleneck = name not in ("resnet18", "resnet34")
    resnet = getattr(torchvision.models, name)(
        weights=None,
        norm_layer=norm_layer(norm),
        replace_stride_with_dilation=_DILATION[output_stride] if bottleneck else None,
    )
    if not bottleneck and output_stride < 32:
        _dilate_basic_resnet(resnet, output_stride)
    widths = [64, 256, 512, 1024, 2048] if bottleneck else [64, 64, 128, 256, 512]
    return ResNetLevels(resnet, levels), [widths[level] for level in levels]
