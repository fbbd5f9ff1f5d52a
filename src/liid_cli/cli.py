"""The `liid` command line: a thin layer over the stages (see `liid --help`)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
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


class Interrupted(BaseException):
    """SIGTERM or SIGINT in the main process. A BaseException, so that nothing catching Exception
    swallows it and every `finally` on the way out runs: temporary outputs are removed and
    resumable state is kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_handler(main_pid: int) -> Callable[[int, FrameType | None], None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != main_pid:  # a forked worker: its parent reports and cleans up
            os._exit(128 + signum)
        raise Interrupted(signum)

    return stop


def main() -> None:
    """The `liid` command (console script and `python -m liid_cli`): a stop by SIGTERM (kill, a
    batch scheduler, a container stop) or SIGINT (Ctrl-C) ends with one line and 128 + signal."""
    handler = _stop_handler(os.getpid())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    try:
        app()
    except Interrupted as stop:
        # A raw write: the signal may have landed while the console's lock was held.
        os.write(sys.stderr.fileno(), b"error: interrupted; rerun the same command to continue\n")
        sys.exit(128 + stop.signum)
