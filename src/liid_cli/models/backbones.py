"""One backbone factory for every network with a trunk: the CAM classifier, the MIL network, the
box-to-mask encoder, Mask R-CNN's FPN and DeepLab.

Any timm model name builds through `timm.create_model(features_only=True)`; the torchvision
ResNets (resnet18/34/50/101, the paper's default on a GPU box) keep torchvision's parameter names.
A trunk takes images in [0, 1] and normalises them itself with the statistics its weights were
trained with, so no caller can pair weights with the wrong mean and std.

Levels are feature-map indices 0..4 at strides 2, 4, 8, 16, 32 (before dilation): (1, 2, 3, 4) feed
an FPN, (4,) alone a CAM or RoI head. `output_stride` 8 or 16 trades the last strides for dilation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from liid_cli.config import StageConfig
from liid_cli.errors import LiidError
from liid_cli.models import weights as weight_sources
from liid_cli.models.resnet_trunk import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Norm,
    ResNetLevels,
    resnet_levels,
)

TORCHVISION_RESNETS = tuple(weight_sources.TORCHVISION_WEIGHTS)


class Normalise(nn.Module):
    """(x - mean) / std on the first len(mean) channels; further channels (a box, a score map)
    pass through unchanged."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        colour = self.mean.shape[1]
        rgb = (images[:, :colour] - self.mean) / self.std
        return torch.cat([rgb, images[:, colour:]], dim=1) if images.shape[1] > colour else rgb


class Trunk(nn.Module):
    """Feature maps of a [0, 1] image batch at the requested levels (low stride first)."""

    def __init__(
        self,
        body: nn.Module,
        channels: Sequence[int],
        strides: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.body = body
        self.channels = tuple(channels)
        self.strides = tuple(strides)
        self.normalise = Normalise(mean, std)

    @property
    def stride(self) -> int:
        """Stride of the last level."""
        return self.strides[-1]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(self.normalise(images)))


def _load(body: nn.Module, state: dict[str, Any], name: str, source: str) -> None:
    """Load a backbone state dict; every parameter of `body` must be in it (extra keys, e.g. a
    classifier head, are ignored)."""
    wanted = set(body.state_dict())
    state = weight_sources.strip_prefix(state, wanted)
    # A frozen-BatchNorm model saves no `num_batches_tracked`; loading fills those counters in.
    missing = sorted(k for k in wanted - set(state) if not k.endswith("num_batches_tracked"))
    if missing:
        raise LiidError(
            f"--weights {source}: not a {name} state dict (missing {', '.join(missing[:3])}); "
            f"pass weights of a {name}, or --weights none"
        )
    try:
        body.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    except RuntimeError:
        raise LiidError(f"--weights {source}: tensor shapes do not fit {name}") from None


def _torchvision_body(
    name: str, weights: str, levels: Sequence[int], output_stride: int, norm: Norm
) -> tuple[nn.Module, list[int]]:
    body, channels = resnet_levels(name, levels, output_stride, norm)
    if weights == "imagenet":
        _load(body, weight_sources.torchvision_state(name), name, weights)
    elif weights != "none":
        _load(body, weight_sources.file_state(Path(weights)), name, weights)
    return body, channels


def _timm_body(
    name: str, weights: str, levels: Sequence[int], output_stride: int, norm: Norm
) -> tuple[nn.Module, list[int], tuple[float, ...], tuple[float, ...]]:
    import timm

    if norm == "gn":
        raise LiidError(f"norm gn needs a torchvision ResNet, not {name}; use bn or frozen_bn")
    try:
        body = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=tuple(levels),
            output_stride=output_stride,
        )
    except RuntimeError as error:  # timm's "Unknown model"
        raise LiidError(f"unknown backbone {name!r} ({error}); pass a timm model name or one of "
                        f"{', '.join(TORCHVISION_RESNETS)}") from None
    if weights == "imagenet":
        lengths = [len(stage) for stage in getattr(body, "blocks", [])]
        _load(body, weight_sources.timm_state(name, lengths), name, weights)
    elif weights != "none":
        _load(body, weight_sources.file_state(Path(weights)), name, weights)
    config = body.pretrained_cfg
    return body, body.feature_info.channels(), config["mean"], config["std"]


def build_trunk(
    name: str,
    weights: str,
    levels: Sequence[int] = (4,),
    output_stride: Literal[8, 16, 32] = 32,
    norm: Norm = "bn",
) -> Trunk:
    """A backbone by name with `--weights imagenet|none|PATH` loaded; see the module docstring."""
    if output_stride not in (8, 16, 32):
        raise LiidError(f"output_stride must be 8, 16 or 32, not {output_stride}")
    if not levels or min(levels) < 0 or max(levels) > 4:
        raise LiidError(f"backbone levels must be among 0..4, not {list(levels)}")
    strides = [min(2 ** (level + 1), output_stride) for level in levels]
    if name in TORCHVISION_RESNETS:
        body, channels = _torchvision_body(name, weights, levels, output_stride, norm)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        body, channels, mean, std = _timm_body(name, weights, levels, output_stride, norm)
    trunk = Trunk(body, channels, strides, mean, std)
    if norm == "frozen_bn":
        freeze_batch_norm(trunk)
    return trunk


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm in `module` becomes a frozen one (fixed statistics and affine parameters)."""
    from timm.layers import freeze_batch_norm_2d

    for name, child in module.named_children():
        setattr(module, name, freeze_batch_norm_2d(child))
    return module


class TrunkConfig(StageConfig):
    """The backbone settings of a trainer's YAML (train-cam, train-mil, pretrain)."""

    backbone: str  # a timm model name, or resnet18/34/50/101 (torchvision)
    weights: str  # imagenet | none | PATH (train-mil also: cam)
    output_stride: Literal[8, 16, 32]
    norm: Norm
    frozen_levels: int = Field(ge=0, le=5)  # levels 0..n-1 (and the stem) keep their weights


def trunk_for(config: TrunkConfig, weights: str | None = None) -> Trunk:
    """The last level of the configured backbone, `weights` overriding the config's."""
    trunk = build_trunk(
        config.backbone, config.weights if weights is None else weights, (4,),
        config.output_stride, config.norm,
    )
    freeze_levels(trunk, config.frozen_levels)
    return trunk


def trunk_settings(settings: dict[str, Any]) -> TrunkConfig:
    """The TrunkConfig part of a saved stage config (a checkpoint's `config`)."""
    return TrunkConfig.model_validate({key: settings[key] for key in TrunkConfig.model_fields})


def _module_order(body: nn.Module) -> list[str]:
    """Paths of the body's top-level modules in forward order, a stage list split into stages."""
    paths = []
    for name, child in body.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)) and name == "blocks":
            paths += [f"{name}.{i}" for i in range(len(child))]
        else:
            paths.append(name)
    return paths


def freeze_levels(trunk: Trunk, below: int) -> None:
    """No gradient for the layers that compute levels < `below` (the stem included when > 0);
    their backward pass is skipped too, which is most of a CPU step for a depthwise network."""
    if below <= 0:
        return
    body = trunk.body
    if isinstance(body, ResNetLevels):
        last = ResNetLevels.LEVEL_MODULES[below - 1]
    else:
        last = body.feature_info.info[below - 1]["module"]
    order = _module_order(body)
    for path in order[: order.index(last) + 1]:
        for parameter in body.get_submodule(path).parameters():
            parameter.requires_grad_(False)


def input_size_of(height: int, width: int, side: int, keep_aspect: bool) -> tuple[int, int]:
    """The network input of an image: a side x side square, or with `keep_aspect` the image scaled
    to that square's area (a photo not squashed, at the square's cost)."""
    if not keep_aspect:
        return side, side
    scale = side / math.sqrt(height * width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def image_to_tensor(image: Any, size: int | tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float (3, h, w) in [0, 1], resized (bilinear) to `size` (a square
    side or (h, w)); the trunk normalises."""
    tensor = torch.tensor(image).permute(2, 0, 1).float().div_(255.0)
    target = (size, size) if isinstance(size, int) else size
    return F.interpolate(tensor[None], size=target, mode="bilinear", align_corners=False)[0]


def build_classifier(name: str, weights: str) -> nn.Module:
    """The whole ImageNet classifier of a backbone (for checking that weights recognise photos)."""
    import timm

    if name in TORCHVISION_RESNETS:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        state = weight_sources.torchvision_state(name) if weights == "imagenet" else \
            weight_sources.file_state(Path(weights))
        model.load_state_dict(state)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        model = timm.create_model(name, pretrained=False)
        if weights == "imagenet":
            state = weight_sources.timm_state(name, [len(s) for s in getattr(model, "blocks", [])])
        else:
            state = weight_sources.file_state(Path(weights))
        model.load_state_dict(state)
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    return nn.Sequential(OrderedDict(normalise=Normalise(mean, std), model=model)).eval()


