"""Commands: `liid train` `liid predict` """

from __future__ import annotations

import typer

from liid_cli.commands.common import Common, stage_command
from liid_cli.errors import not_implemented


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "train")
    def train(common: Common) -> None:
        """Train Mask R-CNN (instance) or DeepLabV3 (semantic) on pseudo labels or ground truth."""
        not_implemented("train")

    @stage_command(app, "predict")
    def predict(common: Common) -> None:
        """Run a trained model over a split or a folder of images."""
        not_implemented("predict")

