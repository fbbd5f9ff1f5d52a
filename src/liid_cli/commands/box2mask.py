"""Commands: `liid train-box2mask` `liid box2mask`.

No `from __future__ import annotations` here: typer resolves the option annotations at runtime.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from liid_cli import artifacts
from liid_cli.commands.common import Common, run_registered, stage_command
from liid_cli.errors import LiidError


class Baseline(str, Enum):
    rect = "rect"
    ellipse = "ellipse"
    grabcut = "grabcut"


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "train-box2mask", resumable=True)
    def train_box2mask(common: Common) -> None:
        """Train the class-agnostic box-to-mask segmenter on source-class masks (`source_classes`
        in stages/train_box2mask.yaml). Writes <run>/box2mask_model/box2mask.pt."""
        run_registered("train-box2mask", common)

    @stage_command(app, "box2mask", resumable=True)
    def box2mask(
        common: Common,
        model: Annotated[
            Path | None,
            typer.Option(
                "--model", help="Box-to-mask checkpoint. Default: <run>/box2mask_model/box2mask.pt."
            ),
        ] = None,
        boxes: Annotated[
            Path | None,
            typer.Option(
                "--boxes",
                help="COCO json of boxes (instances file or results list). Default: the index's boxes.",
            ),
        ] = None,
        baseline: Annotated[
            Baseline | None,
            typer.Option(
                "--baseline",
                help="No model: the box itself, the largest ellipse in it, or GrabCut (OpenCV).",
            ),
        ] = None,
        rounds: Annotated[
            int | None,
            typer.Option(
                "--rounds",
                min=1,
                help="Alternating rounds: semantic FCN score maps feed box-to-mask.",
            ),
        ] = None,
        targets_of: Annotated[
            Path | None,
            typer.Option(
                "--targets-of",
                help="Label the classes this box-to-mask checkpoint never saw masks of, so "
                "baselines and references label the same boxes as that model.",
            ),
        ] = None,
        allow_seen_classes: Annotated[
            bool,
            typer.Option(
                "--allow-seen-classes",
                help="Label classes the model saw masks of; the run is then "
                "recorded as not weakly supervised.",
            ),
        ] = False,
    ) -> None:
        """Turn the boxes of a target data set into COCO pseudo instance masks and palette PNGs.
        Writes <run>/box2mask/pseudo_instances.json and semantic/."""
        overrides = []
        if baseline is not None:
            overrides.append(f"method={baseline.value}")
        if rounds is not None:
            overrides.append(f"rounds={rounds}")
        if allow_seen_classes:
            overrides.append("allow_seen_classes=true")
        extra = {}
        if boxes is not None:
            extra["boxes"] = boxes
        if targets_of is not None:
            extra["targets_of"] = targets_of
        if baseline is None:
            default = (
                artifacts.stage_dir(common.run, "train-box2mask") / artifacts.BOX2MASK_CHECKPOINT
            )
            if model is None and not default.is_file():
                raise LiidError(
                    f"missing {default}: run `liid train-box2mask --run {common.run}` first, "
                    "or pass --model BOX2MASK.pt or --baseline"
                )
            extra["model"] = model or default
        run_registered("box2mask", common, overrides=overrides, extra_inputs=extra)
