"""Command: `liid ablation` (the paper's Table 8 on a finished run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import LiidError
from liid_cli.log import console


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "ablation")
    def ablation(
        common: Common,
        out: Annotated[Path, typer.Option("--out", help="Folder of the variants' runs.")] = Path(
            "runs/ablation"
        ),
        only: Annotated[
            Optional[list[str]], typer.Option("--only", help="Run only these variants (repeatable).")
        ] = None,
    ) -> None:
        """Table 8 of the paper: rerun the pipeline without each loss, without the graph, with mask
        pooling, delta in {1, 2} and eta in {0.5, 1.0}, against the finished run --run (the full
        method). Each variant reuses the stages its change does not affect; pseudo-label metrics go
        to <run>/eval/ablation_<variant>/ and the table is printed."""
        from liid_cli.ablation import VARIANTS, run_ablation
        from liid_cli.evaluation.runs import run_evaluations
        from liid_cli.evaluation.tables import compare_table

        known = {v.name for v in VARIANTS}
        unknown = sorted(set(only or []) - known)
        if unknown:
            raise LiidError(f"--only {', '.join(unknown)}: unknown variant; choose from {', '.join(sorted(known))}")
        if common.set:
            raise LiidError("--set does not apply to `liid ablation`; each variant sets its own override")
        run_ablation(common, out, only)
        records = run_evaluations(common.run)
        rows = {k: v for k, v in records.items() if k == "pseudo_labels" or k.startswith("ablation_")}
        console.print(compare_table([(str(common.run), rows)]))
