"""Logging and progress bars through rich; `--quiet` silences both."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)
log = logging.getLogger("liid")
_state = {"quiet": False}


def setup_logging(quiet: bool = False) -> None:
    """Route the `liid` logger to rich; quiet keeps warnings and errors only."""
    _state["quiet"] = quiet
    if not log.handlers:
        handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (hidden when quiet or when output is not a terminal)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=_state["quiet"],
        transient=False,
    )
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress:
        task = progress.add_task(description, total=total, rate="")
        for item in items:
            yield item
            progress.advance(task)
            elapsed = progress.tasks[0].elapsed or 0.0
            done = progress.tasks[0].completed
            if elapsed > 0:
                progress.update(task, rate=f"{done / elapsed:.1f}/s")
