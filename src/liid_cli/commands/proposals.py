"""Commands: `liid proposals` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "proposals")
    def proposals(common: Common) -> None:
        """Segment-based object proposals with masks (selective search or imported). Writes <run>/proposals/proposals.h5."""
        not_implemented("proposals")

    @stage_command(eval_app, "proposals")
    def eval_proposals(common: Common) -> None:
        """Proposal quality against ground truth: recall at IoU 0.5/0.7 and ABO per proposal count."""
        not_implemented("eval proposals")
