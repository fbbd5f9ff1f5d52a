"""Seeding and checkpoints: plain types only, so `torch.load(weights_only=True)` reads them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli.errors import LiidError
from liid_cli.fileio import atomic_path


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save atomically (tmp then rename)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    if not path.is_file():
        raise LiidError(f"{path}: checkpoint not found; check the path or train the model first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        # torch's first line can be a paragraph on weights_only; the error type says enough.
        raise LiidError(
            f"{path}: not a readable torch checkpoint ({type(error).__name__}); pass a .pt file "
            "saved by liid or a plain state dict"
        ) from None
