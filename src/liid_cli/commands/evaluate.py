"""Commands: `liid eval instances`, `liid eval semantic` (and `liid eval proposals`, in proposals.py)."""

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(eval_app, "instances")
    def instances(common: Common) -> None:
        """Instance masks (pseudo labels or predictions) against ground truth: AP, AP50, AP75, ABO."""
        not_implemented("eval instances")

    @stage_command(eval_app, "semantic")
    def semantic(common: Common) -> None:
        """Semantic label maps against ground truth: mIoU and per-class IoU."""
        not_implemented("eval semantic")
