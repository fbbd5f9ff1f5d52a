"""Commands: `liid cut` (no postponed annotations: typer resolves the enum option from here)."""

from enum import Enum
from typing import Annotated

import typer

from liid_cli import artifacts
from liid_cli.commands.common import Common, run_registered, stage_command


class CutSolver(str, Enum):
    expansion = "expansion"
    argmax = "argmax"


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "cut")
    def cut(
        common: Common,
        solver: Annotated[
            CutSolver | None,
            typer.Option(
                "--solver",
                help="expansion: multiway cut of the kNN graph; argmax: no graph (ablation). "
                "Default: stages/cut.yaml.",
            ),
        ] = None,
    ) -> None:
        """Dataset-wide knowledge graph of proposals cut by multiway cut (OR-Tools).

        Writes <run>/cut/cut.h5."""
        overrides = [] if solver is None else [f"solver={solver.value}"]
        manifest = run_registered("cut", common, overrides=overrides)
        metrics = manifest["metrics"]
        gap = metrics["gap"]
        typer.echo(
            f"{metrics['sops']:,} SOPs, {metrics['sops'] - metrics['noise_sops']:,} labelled, "
            "energy "
            f"{metrics['energy']:.6g}"
            + ("" if gap is None else f", gap {gap:.2e} to the LP bound")
            + f" -> {artifacts.stage_dir(common.run, 'cut')}"
        )
