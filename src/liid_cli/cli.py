"""The `liid` command line: a thin layer over the stages (see `liid --help`)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import typer

from liid_cli import __version__, registry
from liid_cli.commands import (
    ablation,
    box2mask,
    cut,
    data,
    evaluate,
    export,
    networks,
    overview,
    proposals,
    train,
    viz,
)

app = typer.Typer(
    name="liid",
    help=(
        "Weakly supervised instance segmentation from image-level labels (LIID, TPAMI 2020) and "
        "learned box-to-mask, as stages that read and write artifacts under a run folder:\n\n"
        + " -> ".join(("data", *registry.chain("export-coco"), "train", "predict", "eval / viz"))
        + ".\n\nEach stage's settings live in stages/<stage>.yaml; `liid stages` lists them all."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Metrics against ground truth; writes metrics.json and prints a table.",
                       no_args_is_help=True)
app.add_typer(data.data_app, name="data")
app.add_typer(eval_app, name="eval")

for group in (proposals, networks, cut, export, evaluate, viz, train, box2mask, ablation, overview):
    group.register(app, eval_app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"liid {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """liid command line."""


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds like Ctrl-C does: temporary outputs are removed and resumable state kept.
    sys.exit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app()
