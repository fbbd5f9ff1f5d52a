"""A training progress bar with the running loss, learning rate and ETA."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from liid_cli.log import console, log


@contextlib.contextmanager
def training_progress(
    description: str, total: int, *, enabled: bool
) -> Iterator[Callable[[float, float], None]]:
    """Yield `advance(mean_loss, lr)`; hidden when quiet or off rank 0."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]} lr {task.fields[lr]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled or not log.isEnabledFor(logging.INFO),
    )
    with progress:
        task = progress.add_task(description, total=total, loss="-", lr="-")

        def advance(loss: float, lr: float) -> None:
            progress.update(task, advance=1, loss=f"{loss:.4f}", lr=f"{lr:.2e}")

        yield advance
