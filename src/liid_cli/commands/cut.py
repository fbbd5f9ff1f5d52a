"""Commands: `liid cut` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "cut")
    def cut(common: Common) -> None:
        """Dataset-wide knowledge graph of proposals cut by multiway cut (OR-Tools). Writes <run>/cut/cut.h5."""
        not_implemented("cut")

