"""Commands: `liid viz` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "viz")
    def viz(common: Common) -> None:
        """Overlays, palette renderings and the HTML report of a run."""
        not_implemented("viz")

