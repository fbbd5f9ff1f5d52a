"""Backbone registry and `--weights imagenet|none|PATH` resolution, shared by every trainer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liid_cli.errors import LiidError


@dataclass(frozen=True)
class BackboneSpec:
    builder: str  # torchvision.models function name
    weights: str  # torchvision weights enum member, e.g. "ResNet50_Weights.IMAGENET1K_V2"
    channels: int  # channels of the last feature map (stride 32)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512),
    "resnet34": BackboneSpec("resnet34", "ResNet34_Weights.IMAGENET1K_V1", 512),
    "resnet50": BackboneSpec("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 2048),
    "resnet101": BackboneSpec("resnet101", "ResNet101_Weights.IMAGENET1K_V2", 2048),
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise LiidError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def imagenet_state_dict(name: str) -> dict[str, Any]:
    """torchvision's ImageNet weights, from the torch cache or a download; a clear error otherwise."""
    import torchvision

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
    """A ResNet without pooling and classifier (stride 32), and its output channels."""
    import torch.nn as nn
    import torchvision

    spec = backbone_spec(name)
    model = getattr(torchvision.models, spec.builder)(weights=None)
    state = resolve_weights(name, weights)
    if state is not None:
        missing, _ = model.load_state_dict(state, strict=False)
        if any(not key.startswith("fc.") for key in missing):
            raise LiidError(f"--weights {weights}: not a {name} state dict (missing {missing[:3]})")
    trunk = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
    )
    return trunk, spec.channels
