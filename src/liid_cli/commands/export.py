"""Commands: `liid export-coco` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "export-coco")
    def export_coco(common: Common) -> None:
        """COCO instance pseudo labels and palette PNG semantic labels from the cut. Writes <run>/export/."""
        not_implemented("export-coco")

