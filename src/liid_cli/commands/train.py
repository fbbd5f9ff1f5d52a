"""Commands: `liid train` (Mask R-CNN or DeepLabV3, also under torchrun) and `liid predict`."""

import dataclasses
import importlib
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from liid_cli import artifacts
from liid_cli.commands.common import Common, run_stage_module, stage_command, val_index_beside
from liid_cli.device import resolve_device
from liid_cli.errors import LiidError
from liid_cli.fileio import remove_path
from liid_cli.log import log, setup_logging
from liid_cli.runner import index_from_upstream, read_manifest


class DownstreamTask(str, Enum):
    instance = "instance"
    semantic = "semantic"


# task -> (stage module, stage name) of training and of prediction
TRAIN_STAGES = {
    DownstreamTask.instance: ("train", "train"),
    DownstreamTask.semantic: ("train_semantic", "train-semantic"),
}
PREDICT_STAGES = {
    DownstreamTask.instance: ("predict", "predict"),
    DownstreamTask.semantic: ("predict_semantic", "predict-semantic"),
}
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


def _is_follower() -> bool:
    return int(os.environ.get("RANK", "0")) != 0


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


def _discard_interrupted(run: Path, stage: str) -> None:
    cache = artifacts.cache_dir(run, stage)
    if cache.exists():
        log.warning(
            f"starting over: discarding the interrupted run's checkpoints in {cache} "
            "(pass --resume to continue it)"
        )
        remove_path(cache)


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "train")
    def train(
        common: Common,
        task: TaskOption = DownstreamTask.instance,
        labels: Annotated[
            Optional[Path],
            typer.Option(
                "--labels",
                help="COCO instances json (either task) or folder of palette PNGs (semantic). "
                "Default: the run's exported pseudo labels.",
            ),
        ] = None,
        val: Annotated[
            Optional[Path],
            typer.Option(
                "--val",
                help="Index of a split with ground truth for validation. Default: index_val.json "
                "beside the training index, if it has ground truth.",
            ),
        ] = None,
        weights: Annotated[
            Optional[str],
            typer.Option(
                "--weights",
                help="Backbone initialisation: imagenet, none or PATH to a state dict. "
                "Default: the stage YAML's.",
            ),
        ] = None,
        resume: Annotated[
            bool,
            typer.Option(
                "--resume", help="Continue an interrupted run from its last finished epoch."
            ),
        ] = False,
    ) -> None:
        """Train Mask R-CNN (instance) or DeepLabV3 (semantic) on pseudo labels or ground truth.

        Writes model_best.pt and model_last.pt into <run>/train/ or <run>/train_semantic/.

        Several processes (DDP): torchrun --nproc-per-node N -m -- liid_cli train --run ...
        """
        from liid_cli.downstream.distributed import run_distributed

        if _is_follower():
            setup_logging(True)
        module, stage = TRAIN_STAGES[task]
        if labels is None:
            labels = _default_labels(common.run, task)
        data = common.data or index_from_upstream(common.run, ("export-coco",))
        extra_inputs = {"labels": labels}
        val = val or _default_val(data)
        if val is not None:
            extra_inputs["val"] = val
        overrides = [f"weights={weights}"] if weights is not None else []
        common = dataclasses.replace(common, data=data)
        if not resume and not _is_follower():
            _discard_interrupted(common.run, stage)
        spec = importlib.import_module(f"liid_cli.stages.{module}").SPEC
        run_distributed(
            spec,
            resolve_device(common.device),
            lambda: run_stage_module(
                module, common, overrides=overrides, extra_inputs=extra_inputs
            ),
        )

    @stage_command(app, "predict")
    def predict(
        common: Common,
        task: TaskOption = DownstreamTask.instance,
        model: Annotated[
            Optional[Path],
            typer.Option(
                "--model", help="A checkpoint of `liid train`. Default: the run's model_best.pt."
            ),
        ] = None,
        images: Annotated[
            Optional[Path],
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

        module, _ = PREDICT_STAGES[task]
        if model is None:
            model = artifacts.stage_dir(common.run, TRAIN_STAGES[task][1]) / artifacts.MODEL_BEST
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
        run_stage_module(module, common, extra_inputs={"model": model})
