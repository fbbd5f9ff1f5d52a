"""Reading a trained downstream model back: task and class checks with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liid_cli.checkpoints import load_checkpoint
from liid_cli.data.index import DatasetIndex
from liid_cli.errors import LiidError


def describe(task: str, model_config: dict[str, Any], index: DatasetIndex) -> dict[str, Any]:
    """The plain-typed header of every checkpoint: what rebuilds the model and names its classes."""
    classes = index.classes
    return {
        "task": task,
        "model_config": model_config,
        "class_names": list(classes.names),
        "category_ids": list(classes.category_ids),
    }


def load_trained(path: Path, task: str, index: DatasetIndex) -> dict[str, Any]:
    """A `liid train` checkpoint of `task` whose classes are the index's, or a one-line error."""
    checkpoint = load_checkpoint(path)
    if not {"task", "model_config", "class_names", "category_ids", "model"} <= set(checkpoint):
        raise LiidError(
            f"{path}: not a model written by `liid train` (model_best.pt / model_last.pt)"
        )
    if checkpoint["task"] != task:
        raise LiidError(
            f"{path}: a {checkpoint['task']} model, not a {task} one; "
            f"pass --task {checkpoint['task']}"
        )
    require_same_classes(checkpoint, index, path)
    return checkpoint


def require_same_classes(checkpoint: dict[str, Any], index: DatasetIndex, path: Path) -> None:
    classes = index.classes
    ours = list(zip(checkpoint["category_ids"], checkpoint["class_names"]))
    theirs = list(zip(classes.category_ids, classes.names))
    if ours != theirs:
        raise LiidError(
            f"{path}: the model has {len(ours)} classes "
            f"({', '.join(checkpoint['class_names'])}) but "
            f"{index.path} has {len(theirs)} ({', '.join(classes.names)}); "
            "use a model trained on this label set"
        )
