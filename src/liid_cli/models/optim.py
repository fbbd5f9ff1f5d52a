"""The optimiser choice shared by every trainer: the papers' SGD, or AdamW for training from scratch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch

OptimizerName = Literal["sgd", "adamw"]


def make_optimizer(
    name: OptimizerName,
    parameters: Iterable[Any],
    lr: float,
    momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """SGD with momentum (the recipes' choice), or AdamW (momentum unused), which learns much
    faster from random initialisation on the small CPU demo. `parameters` may be param groups."""
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
