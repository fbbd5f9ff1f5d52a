"""Commands: `liid train-cam` `liid train-mil` `liid dump` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "train-cam")
    def train_cam(common: Common) -> None:
        """Train the multi-label CAM classifier on image labels and score every proposal by its CAM. Writes <run>/cam/."""
        not_implemented("train-cam")

    @stage_command(app, "train-mil")
    def train_mil(common: Common) -> None:
        """Train the MIL network (L_Att + L_MIL + L_Cent) on proposals. Writes <run>/mil/mil.pt."""
        not_implemented("train-mil")

    @stage_command(app, "dump")
    def dump(common: Common) -> None:
        """Per-proposal probabilities and features of the MIL network for every image. Writes <run>/dump/dump.h5."""
        not_implemented("dump")

