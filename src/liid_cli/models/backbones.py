"""Backbone registry and `--weights imagenet|none|PATH` resolution, shared by every trainer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liid_cli.errors import LiidError


@dataclass(frozen=True)
class BackboneSpec:
    builder: str  # torchvision.models function name
    weights: str  # torchvision weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V2"
    channels: int  # channels of the last feature map
    stride: int = 32  # input pixels per feature-map cell


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512),
    "resnet34": BackboneSpec("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 512),
    "resnet50": BackboneSpec("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 2048),
    "resnet101": BackboneSpec("resnet101", "ResNet101_Weights.IMAGENET1K_V2", 2048),
    # Small stride-8 CNN for training from scratch on a CPU (the demo); no ImageNet weights exist.
    "tinynet": BackboneSpec("tinynet", "", 128, stride=8),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tinynet_trunk() -> Any:
    """Seven 3x3 conv-BN-ReLU layers, stride 8, dilated at the end: a 107 px receptive field."""
    import torch.nn as nn

    layers: list[nn.Module] = []
    plan = [(3, 32, 2, 1), (32, 32, 1, 1), (32, 64, 2, 1), (64, 64, 1, 1), (64, 128, 2, 1),
            (128, 128, 1, 2), (128, 128, 1, 3)]  # (in, out, stride, dilation)
    for cin, cout, stride, dilation in plan:
        layers += [nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


LOCAL_TRUNKS: dict[str, Callable[[], Any]] = {"tinynet": tinynet_trunk}


def image_to_tensor(image: Any, size: int) -> Any:
    """uint8 (H, W, 3) RGB -> float (3, size, size), resized (bilinear) and ImageNet-normalised."""
    import torch
    import torch.nn.functional as F

    tensor = torch.tensor(image).permute(2, 0, 1).float().div_(255.0)
    tensor = F.interpolate(tensor[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (tensor - mean) / std


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise LiidError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def imagenet_state_dict(name: str) -> dict[str, Any]:
    """torchvision's ImageNet weights, from the torch cache or a download; a clear error otherwise."""
    import torchvision

    if not backbone_spec(name).weights:
        raise LiidError(f"{name} has no ImageNet weights; use --weights none or --weights PATH to a state dict")
    enum_name, member = backbone_spec(name).weights.split(".")
    weights = getattr(getattr(torchvision.models, enum_name), member)
    try:
        return weights.get_state_dict(progress=False)
    except Exception as error:  # urllib/OSError/ssl: any failure to fetch means the same to a user
        raise LiidError(
            f"cannot load ImageNet weights for {name} ({type(error).__name__}: {error}); "
            "put them in the torch cache, pass --weights PATH to a state dict, or use --weights none"
        ) from None


def resolve_weights(name: str, weights: str) -> dict[str, Any] | None:
    """State dict for `--weights`: 'imagenet', 'none' (None) or a path to a state dict file."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return imagenet_state_dict(name)
    from liid_cli.checkpoints import load_checkpoint

    state = load_checkpoint(Path(weights))
    return state.get("model", state)


def build_trunk(name: str, weights: str) -> tuple[Callable[..., Any], int]:
    """A backbone without pooling and classifier (stride `spec.stride`), and its output channels."""
    import torch.nn as nn
    import torchvision

    spec = backbone_spec(name)
    if spec.builder in LOCAL_TRUNKS:
        local = LOCAL_TRUNKS[spec.builder]()
        state = resolve_weights(name, weights)
        if state is not None:
            try:
                local.load_state_dict(state)
            except RuntimeError:
                raise LiidError(f"--weights {weights}: not a {name} state dict") from None
        return local, spec.channels
    model = getattr(torchvision.models, spec.builder)(weights=None)
    state = resolve_weights(name, weights)
    if state is not None:
        missing, _ = model.load_state_dict(state, strict=False)
        if any(not key.startswith("fc.") for key in missing):
            raise LiidError(f"--weights {weights}: not a {name} state dict (missing {missing[:3]})")
    # torchvision's own names, so a trunk's state dict loads back as `--weights PATH` for this backbone.
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    trunk = nn.Sequential(OrderedDict((name, getattr(model, name)) for name in names))
    return trunk, spec.channels
