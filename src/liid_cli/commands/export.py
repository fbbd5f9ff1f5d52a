"""Commands: `liid export-coco`"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from liid_cli import artifacts
from liid_cli.commands.common import Common, run_stage_module, stage_command


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "export-coco")
    def export_coco(
        common: Common,
        min_score: Annotated[
            Optional[float],
            typer.Option(
                "--min-score",
                min=0.0,
                max=1.0,
                help="Drop SOPs whose probability of their label is below this "
                "(default: stages/export_coco.yaml).",
            ),
        ] = None,
    ) -> None:
        """COCO instance and PNG semantic pseudo labels of the cut. Writes <run>/export/."""
        overrides = [] if min_score is None else [f"min_score={min_score}"]
        manifest = run_stage_module("export_coco", common, overrides=overrides)
        metrics = manifest["metrics"]
        typer.echo(
            f"{metrics['instances']} pseudo instances on {metrics['images']} images "
            f"({metrics['images_without_instances']} without any) "
            f"-> {artifacts.stage_dir(common.run, 'export-coco')}"
        )
