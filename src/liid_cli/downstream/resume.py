"""Resuming an interrupted `liid train`: the key a resumable checkpoint must match (settings, seed
and input contents) and loading the checkpoint only when it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liid_cli.checkpoints import load_checkpoint
from liid_cli.config import StageConfig
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256, text_sha256
from liid_cli.runner import StageContext

RESUME_CHECKPOINT = "resume.pt"


def resume_key(config: StageConfig, context: StageContext) -> str:
    """What a resumable checkpoint must match: settings, seed and input contents."""
    inputs = {"index": file_sha256(context.index_path)}
    for name, path in sorted(context.extra_inputs.items()):
        inputs[name] = (
            file_sha256(path)
            if path.is_file()
            else sorted(
                (str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file()
            )
        )
    return text_sha256(repr((config.model_dump(mode="json"), context.seed, inputs)))


def load_resume_state(cache_dir: Path, key: str) -> dict[str, Any] | None:
    path = cache_dir / RESUME_CHECKPOINT
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    if state.get("key") != key:
        raise LiidError(
            f"{path}: this checkpoint was made with other settings or inputs; "
            "rerun without --resume to start over"
        )
    return state
