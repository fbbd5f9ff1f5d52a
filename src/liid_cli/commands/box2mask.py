"""Commands: `liid train-box2mask` `liid box2mask` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "train-box2mask")
    def train_box2mask(common: Common) -> None:
        """Train the class-agnostic box-to-mask segmenter on source-class masks."""
        not_implemented("train-box2mask")

    @stage_command(app, "box2mask")
    def box2mask(common: Common) -> None:
        """Turn boxes into masks with a trained box-to-mask model."""
        not_implemented("box2mask")

