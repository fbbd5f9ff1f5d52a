"""Commands: `liid pretrain` `liid train-cam` `liid train-mil` `liid dump`

Option annotations are written inline: `stage_command` resolves them in commands/common.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from liid_cli import artifacts, registry
from liid_cli.commands.common import Common, run_registered, stage_command, val_index_beside
from liid_cli.device import resolve_device

WeightsOption = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="Backbone initialisation: imagenet | none | PATH to a state dict (e.g. a `liid "
        "pretrain` backbone.pt); train-mil also: cam (the train-cam backbone). Default: the "
        "stage YAML's `weights`.",
    ),
]


def _weights(weights: str | None) -> tuple[list[str], dict[str, Path]]:
    """The override for --weights, and the weights file as an input when it is a path."""
    if weights is None:
        return [], {}
    extra = {} if weights in ("imagenet", "none", "cam") else {"weights": Path(weights)}
    return [f"weights={weights}"], extra


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "pretrain", resumable=True)
    def pretrain(
        common: Common,
        weights: WeightsOption = None,
        val: Annotated[
            Path | None,
            typer.Option(
                "--val",
                help="Index of held-out labelled images for the accuracy. Default: "
                "index_val.json beside the --data index, if there is one.",
            ),
        ] = None,
    ) -> None:
        """Pretrain a backbone as an image classifier on a fully labelled set (where no ImageNet weights fit). Writes <run>/pretrain/backbone.pt for --weights PATH."""
        overrides, extra = _weights(weights)
        val = val or val_index_beside(common.data)
        if val is not None:
            extra["val"] = val
        manifest = run_registered("pretrain", common, overrides=overrides, extra_inputs=extra)
        accuracy = manifest["metrics"].get("val_accuracy")
        held_out = f", held-out top-1 accuracy {accuracy['top1']:.3f}" if accuracy else ""
        typer.echo(
            f"backbone {manifest['config']['backbone']}{held_out} -> "
            f"{artifacts.stage_dir(common.run, 'pretrain') / artifacts.PRETRAINED_BACKBONE}"
        )

    @stage_command(app, "train-cam", resumable=True)
    def train_cam(
        common: Common,
        weights: WeightsOption = None,
        save_cams: Annotated[
            bool,
            typer.Option(
                "--save-cams", help="Also save heat-map PNGs of the CAMs in <run>/cam/cams/."
            ),
        ] = False,
    ) -> None:
        """Train the multi-label CAM classifier on image labels and score every proposal by its CAM. Writes <run>/cam/."""
        overrides, extra = _weights(weights)
        if save_cams:
            overrides.append("save_cams=true")
        run_registered("train-cam", common, overrides=overrides, extra_inputs=extra)

    @stage_command(app, "train-mil", resumable=True)
    def train_mil(common: Common, weights: WeightsOption = None) -> None:
        """Train the MIL network (L_Att + L_MIL + L_Cent) on proposals. Writes <run>/mil/mil.pt.

        Several processes (DDP): torchrun --nproc-per-node N -m -- liid_cli train-mil --run ...
        """
        from liid_cli.distributed import run_distributed

        overrides, extra = _weights(weights)
        run_distributed(
            registry.stage("train-mil").spec(),
            resolve_device(common.device),
            lambda: run_registered("train-mil", common, overrides=overrides, extra_inputs=extra),
        )

    @stage_command(app, "dump")
    def dump(common: Common) -> None:
        """Per-proposal probabilities and features of the MIL network for every image. Writes <run>/dump/dump.h5."""
        manifest = run_registered("dump", common)
        metrics = manifest["metrics"]
        typer.echo(
            f"{metrics['proposals']} proposals of {metrics['images']} images "
            f"({metrics['images_per_second']:.1f} images/s) -> {artifacts.stage_dir(common.run, 'dump')}"
        )
