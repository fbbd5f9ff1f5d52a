"""Command: `liid stages`, the stage registry as a table (what each stage reads and where it writes)."""

from __future__ import annotations

import typer
from rich.table import Table

from liid_cli import registry
from liid_cli.log import console


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command("stages")
    def stages() -> None:
        """Every stage in pipeline order: its run sub-folder, the stages it reads, what it does."""
        table = Table(title="liid stages: settings in stages/<stage>.yaml, `liid <stage> --help`")
        table.add_column("stage", no_wrap=True)
        table.add_column("writes <run>/", no_wrap=True)
        table.add_column("reads")
        table.add_column("what it does")
        for entry in registry.STAGES:
            summary = f"{entry.summary} (`{entry.cli}`)" if entry.command else entry.summary
            table.add_row(entry.name, f"{entry.folder}/", ", ".join(entry.upstream) or "-", summary)
        console.print(table)
