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


def rng_states() -> dict[str, Any]:
    """The global random states (python, numpy, torch CPU) as plain types: saved with a
    checkpoint, they make a resumed run draw the same augmentations as an uninterrupted one."""
    import torch

    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.copy()), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, gauss))
    import torch

    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


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
