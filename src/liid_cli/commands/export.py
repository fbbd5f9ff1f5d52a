"""Commands: `liid export-coco`"""

from __future__ import annotations

from typing import Annotated

import typer

from liid_cli import artifacts
from liid_cli.commands.common import Common, run_registered, stage_command


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "export-coco")
    def export_coco(
        common: Common,
        min_score: Annotated[
            float | None,
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
        manifest = run_registered("export-coco", common, overrides=overrides)
        metrics = manifest["metrics"]
        typer.echo(
            f"{metrics['instances']} pseudo instances on {metrics['images']} images "
            f"({metrics['images_without_instances']} without any) "
            f"-> {artifacts.stage_dir(common.run, 'export-coco')}"
        )

    @stage_command(app, "baselines")
    def baselines(common: Common) -> None:
        """Simple pseudo labels to hold LIID against: CAM threshold, best proposal per class, and
        no graph (argmax). Writes <run>/baselines/<name>/pseudo_instances.json in export-coco's
        format; evaluate with `liid eval instances --predictions ... --name baseline_<name>`."""
        manifest = run_registered("baselines", common)
        folder = artifacts.stage_dir(common.run, "baselines")
        for name, counts in manifest["metrics"].items():
            typer.echo(f"{name}: {counts['instances']} pseudo instances -> {folder / name}")
