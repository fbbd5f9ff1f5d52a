"""Commands: `liid viz`"""

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "viz")
    def viz(common: Common) -> None:
        """Overlay grids (ground truth, pseudo labels, predictions, label maps), <run>/report.html.

        Draws whatever stages the run has and always redraws (--force, --device, --workers unused).
        """
        from liid_cli.config import load_stage_config
        from liid_cli.viz.run import VizConfig, run_viz

        config = load_stage_config(
            "viz",
            VizConfig,
            profile=common.profile,
            config_file=common.config,
            overrides=common.set,
        )
        report = run_viz(common.run, common.data, config, common.seed)
        typer.echo(f"wrote {report}")
