"""`--device auto|cpu|cuda`: auto takes the GPU when there is one."""

from __future__ import annotations

from enum import Enum

from liid_cli.errors import LiidError


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def resolve_device(choice: DeviceChoice | str) -> str:
    """Return a torch device string for the user's choice."""
    import torch

    value = DeviceChoice(choice)
    if value is DeviceChoice.auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value is DeviceChoice.cuda and not torch.cuda.is_available():
        raise LiidError("--device cuda was asked for but torch sees no GPU; use --device cpu or auto")
    return value.value
