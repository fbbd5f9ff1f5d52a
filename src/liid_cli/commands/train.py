"""Commands: `liid train` (Mask R-CNN or DeepLabV3, also under torchrun) and `liid predict`."""

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from liid_cli import artifacts, registry
from liid_cli.commands.common import Common, run_registered, stage_command, val_index_beside
from liid_cli.device import resolve_device
from liid_cli.errors import LiidError
from liid_cli.runner import index_from_upstream, read_manifest


class DownstreamTask(str, Enum):
    instance = "instance"
    semantic = "semantic"


# task -> the stage that trains and the stage that predicts
TRAIN_STAGES = {DownstreamTask.instance: "train", DownstreamTask.semantic: "train-semantic"}
PREDICT_STAGES = {DownstreamTask.instance: "predict", DownstreamTask.semantic: "predict-semantic"}
EXPORTED_LABELS = {
    DownstreamTask.instance: artifacts.PSEUDO_INSTANCES_JSON,
    DownstreamTask.semantic: artifacts.SEMANTIC_DIR,
}

TaskOption = Annotated[
    DownstreamTask,
    typer.Option(
        "--task", help="instance: Mask R-CNN -> COCO results; semantic: DeepLabV3 -> palette PNGs."
    ),
]


def _default_labels(run: Path, task: DownstreamTask) -> Path:
    export = artifacts.stage_dir(run, "export-coco")
    if read_manifest(export) is None:
        raise LiidError(
            f"missing {export / artifacts.MANIFEST}: run `liid export-coco --run {run}` first, "
            "or pass --labels (e.g. gt_train.json) with --data"
        )
    return export / EXPORTED_LABELS[task]


def _default_val(index: Path | None) -> Path | None:
    """index_val.json beside the training index, when it exists, differs and has ground truth."""
    from liid_cli.data.index import load_index

    candidate = val_index_beside(index)
    if candidate is None:
        return None
    ground_truth = load_index(candidate).ground_truth_path
    return candidate if ground_truth is not None and ground_truth.is_file() else None


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "train", resumable=True)
    def train(
        common: Common,
        task: TaskOption = DownstreamTask.instance,
        labels: Annotated[
            Path | None,
            typer.Option(
                "--labels",
                help="COCO instances json (either task) or folder of palette PNGs (semantic). "
                "Default: the run's exported pseudo labels.",
            ),
        ] = None,
        val: Annotated[
            Path | None,
            typer.Option(
                "--val",
                help="Index of a split with ground truth for validation. Default: index_val.json "
                "beside the training index, if it has ground truth.",
            ),
        ] = None,
        weights: Annotated[
            str | None,
            typer.Option(
                "--weights",
                help="Backbone initialisation: imagenet, none or PATH to a state dict. "
                "Default: the stage YAML's.",
            ),
        ] = None,
    ) -> None:
        """Train Mask R-CNN (instance) or DeepLabV3 (semantic) on pseudo labels or ground truth.

        Writes model_best.pt and model_last.pt into <run>/train/ or <run>/train_semantic/.

        Several processes (DDP): torchrun --nproc-per-node N -m -- liid_cli train --run ...
        """
        from liid_cli.distributed import run_distributed

        stage = TRAIN_STAGES[task]
        if labels is None:
            labels = _default_labels(common.run, task)
        data = common.data or index_from_upstream(common.run, ("export-coco",))
        extra_inputs = {"labels": labels}
        val = val or _default_val(data)
        if val is not None:
            extra_inputs["val"] = val
        overrides = [f"weights={weights}"] if weights is not None else []
        common = dataclasses.replace(common, data=data)
        run_distributed(
            registry.stage(stage).spec(),
            resolve_device(common.device),
            lambda: run_registered(
                stage, common, overrides=overrides, extra_inputs=extra_inputs
            ),
        )

    @stage_command(app, "predict")
    def predict(
        common: Common,
        task: TaskOption = DownstreamTask.instance,
        model: Annotated[
            Path | None,
            typer.Option(
                "--model", help="A checkpoint of `liid train`. Default: the run's model_best.pt."
            ),
        ] = None,
        images: Annotated[
            Path | None,
            typer.Option(
                "--images", help="A folder of images to predict (instead of --data INDEX.json)."
            ),
        ] = None,
    ) -> None:
        """Run a trained model over a split (--data INDEX.json) or a folder (--images DIR).

        Instance: <run>/predict/predictions.json (COCO results, RLE masks, scores).

        Semantic: <run>/predict_semantic/semantic/<image>.png (palette PNGs).
        """
        from liid_cli.downstream.folder_index import write_folder_index

        if model is None:
            model = artifacts.stage_dir(common.run, TRAIN_STAGES[task]) / artifacts.MODEL_BEST
            if not model.is_file():
                raise LiidError(
                    f"missing {model}: run `liid train --task {task.value} --run {common.run}` "
                    "first, or pass --model"
                )
        if images is not None and common.data is not None:
            raise LiidError("pass either --data INDEX.json or --images DIR, not both")
        if images is None and common.data is None:
            raise LiidError("nothing to predict: pass --data INDEX.json (a split) or --images DIR")
        if images is not None:
            index = (
                common.run
                / artifacts.INPUTS_DIR
                / artifacts.FOLDER_INDEX.format(name=images.resolve().name)
            )
            common = dataclasses.replace(common, data=write_folder_index(images, model, index))
        run_registered(PREDICT_STAGES[task], common, extra_inputs={"model": model})
