"""`liid train` and `liid predict` end to end on the tiny demo set (a few iterations each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import assert_one_line_error, liid
from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint, save_checkpoint
from liid_cli.downstream import training
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.fileio import read_json
from liid_cli.palette import read_label_png

TINY = [
    "--profile",
    "demo",
    "--device",
    "cpu",
    "--set",
    "epochs=1",
    "--set",
    "batch_size=8",
    "--set",
    "lr_reference_batch=8",
    "--set",
    "warmup_iters=2",
]
TINY_INSTANCE = [*TINY, "--set", "model.train_sizes=[64]", "--set", "model.max_size=128"]
TINY_SEMANTIC = [*TINY, "--set", "crop_size=64", "--set", "epochs=2", "--set", "val_every=1"]


def _manifest(run: Path, stage: str) -> dict:
    return read_json(artifacts.stage_dir(run, stage) / artifacts.MANIFEST)


@pytest.fixture(scope="module")
def instance_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mask R-CNN trained one epoch on the tiny ground truth (validated on the tiny val split)."""
    run = tmp_path_factory.mktemp("runs") / "gt"
    result = liid(
        "train",
        "--run",
        run,
        "--data",
        tiny_demo / "index_train.json",
        "--labels",
        tiny_demo / "gt_train.json",
        *TINY_INSTANCE,
        "-q",
    )
    assert result.exit_code == 0, result.output
    return run


def test_train_instance_writes_models_and_validates(instance_run: Path, tiny_demo: Path) -> None:
    folder = artifacts.stage_dir(instance_run, "train")
    assert (folder / artifacts.MODEL_BEST).is_file() and (folder / artifacts.MODEL_LAST).is_file()
    metrics = _manifest(instance_run, "train")["metrics"]
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1
    assert {"AP50", "AP75", "ABO"} <= set(metrics["best"])
    inputs = _manifest(instance_run, "train")["inputs"]
    assert inputs["val"]["path"] == str(
        tiny_demo / "index_val.json"
    )  # found beside the training index
    again = liid(
        "train",
        "--run",
        instance_run,
        "--data",
        tiny_demo / "index_train.json",
        "--labels",
        tiny_demo / "gt_train.json",
        *TINY_INSTANCE,
    )
    assert again.exit_code == 0 and "up to date" in again.output


def test_predict_split_gives_coco_results_that_eval_reads(
    instance_run: Path, tiny_demo: Path
) -> None:
    result = liid(
        "predict",
        "--run",
        instance_run,
        "--data",
        tiny_demo / "index_val.json",
        "-q",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    predictions = read_json(
        artifacts.stage_dir(instance_run, "predict") / artifacts.PREDICTIONS_JSON
    )
    val_ids = {image["id"] for image in read_json(tiny_demo / "index_val.json")["images"]}
    assert predictions and {p["image_id"] for p in predictions} <= val_ids
    assert {"image_id", "category_id", "segmentation", "score", "bbox"} <= set(predictions[0])
    summary = evaluate_instances(tiny_demo / "gt_val.json", predictions)
    assert summary["num_predictions"] == len(predictions)
    assert _manifest(instance_run, "predict")["metrics"]["ground_truth"]["AP50"] == pytest.approx(
        summary["AP50"]
    )


def test_predict_folder_of_images(instance_run: Path, tiny_demo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("val_0000.png", "val_0001.png"):
        shutil.copy(tiny_demo / "images" / name, folder / name)
    run = tmp_path / "run"
    model = artifacts.stage_dir(instance_run, "train") / artifacts.MODEL_BEST
    result = liid(
        "predict", "--run", run, "--model", model, "--images", folder, "-q", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    predictions = read_json(artifacts.stage_dir(run, "predict") / artifacts.PREDICTIONS_JSON)
    assert {p["image_id"] for p in predictions} <= {1, 2}
    assert (run / artifacts.INPUTS_DIR / artifacts.FOLDER_INDEX.format(name="photos")).is_file()


def test_predict_with_a_model_of_another_class_count_is_a_clear_error(
    instance_run: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    index = read_json(tiny_demo / "index_val.json")
    index["categories"] = index["categories"][:5]
    for image in index["images"]:
        image["labels"] = [c for c in image["labels"] if c <= 5]
    index["info"]["image_root"] = str(tiny_demo / "images")
    index["info"]["ground_truth"] = None
    path = tmp_path / "index_five.json"
    path.write_text(json.dumps(index))
    model = artifacts.stage_dir(instance_run, "train") / artifacts.MODEL_BEST
    result = liid(
        "predict",
        "--run",
        tmp_path / "run",
        "--model",
        model,
        "--data",
        path,
        "--device",
        "cpu",
        "-q",
    )
    assert_one_line_error(result, "the model has 6 classes", "has 5")


def test_train_without_export_or_labels_names_the_stage_to_run(tmp_path: Path) -> None:
    assert_one_line_error(liid("train", "--run", tmp_path / "run"), "liid export-coco")


def test_train_on_an_empty_annotations_file_is_a_clear_error(
    tiny_demo: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(read_json(tiny_demo / "gt_train.json") | {"annotations": []}))
    result = liid(
        "train",
        "--run",
        tmp_path / "run",
        "--data",
        tiny_demo / "index_train.json",
        "--labels",
        empty,
        *TINY_INSTANCE,
        "-q",
    )
    assert_one_line_error(result, str(empty), "no annotations")


@pytest.fixture(scope="module")
def semantic_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DeepLabV3 on the tiny ground truth as label maps: interrupted in epoch 2, then resumed."""
    run = tmp_path_factory.mktemp("runs") / "semantic"
    command = [
        "train",
        "--task",
        "semantic",
        "--run",
        run,
        "--data",
        tiny_demo / "index_train.json",
        "--labels",
        tiny_demo / "gt_train.json",
        *TINY_SEMANTIC,
        "-q",
    ]
    original = training.train_one_epoch
    epochs_run: list[str] = []

    def interrupted(*args: object, **kwargs: object) -> dict[str, float]:
        description = args[8]
        epochs_run.append(str(description))
        if str(description).startswith("epoch 2/") and len(epochs_run) == 2:
            raise KeyboardInterrupt  # the first run's epoch 2 only
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train_one_epoch", interrupted)
        first = liid(*command)
        assert first.exit_code != 0
        assert not artifacts.stage_dir(run, "train-semantic").exists()
        epochs_run.clear()
        resumed = liid(*command, "--resume")
        assert resumed.exit_code == 0, resumed.output
    assert epochs_run == ["epoch 2/2"]  # epoch 1 came from the checkpoint
    return run


def test_resume_finishes_with_the_configured_epoch_count(semantic_run: Path) -> None:
    metrics = _manifest(semantic_run, "train-semantic")["metrics"]
    assert metrics["epochs"] == 2
    assert [record["epoch"] for record in metrics["history"]] == [1, 2]
    assert metrics["best"]["mIoU"] is not None
    assert not artifacts.cache_dir(semantic_run, "train-semantic").exists()


def test_resumed_training_equals_an_uninterrupted_run(
    semantic_run: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    run = tmp_path / "uninterrupted"
    result = liid(
        "train", "--task", "semantic", "--run", run, "--data", tiny_demo / "index_train.json",
        "--labels", tiny_demo / "gt_train.json", *TINY_SEMANTIC, "-q",
    )
    assert result.exit_code == 0, result.output
    resumed, whole = (
        load_checkpoint(artifacts.stage_dir(folder, "train-semantic") / artifacts.MODEL_LAST)["model"]
        for folder in (semantic_run, run)
    )
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[key], whole[key]) for key in whole)


def test_resume_with_other_settings_is_a_clear_error(tiny_demo: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cache = artifacts.cache_dir(run, "train-semantic")
    cache.mkdir(parents=True)
    save_checkpoint(cache / artifacts.RESUME_CHECKPOINT.format(part=""), {"key": "other"})
    result = liid(
        "train",
        "--task",
        "semantic",
        "--run",
        run,
        "--data",
        tiny_demo / "index_train.json",
        "--labels",
        tiny_demo / "gt_train.json",
        *TINY_SEMANTIC,
        "--resume",
        "-q",
    )
    assert_one_line_error(result, "other settings, inputs or code", "without --resume")


def test_predict_semantic_writes_palette_pngs(semantic_run: Path, tiny_demo: Path) -> None:
    result = liid(
        "predict",
        "--task",
        "semantic",
        "--run",
        semantic_run,
        "--data",
        tiny_demo / "index_val.json",
        "-q",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    folder = artifacts.stage_dir(semantic_run, "predict-semantic") / artifacts.SEMANTIC_DIR
    for image in read_json(tiny_demo / "index_val.json")["images"]:
        label_map = read_label_png(folder / f"{image['name']}.png")
        assert label_map.shape == (image["height"], image["width"]) and label_map.max() <= 6
    assert (
        _manifest(semantic_run, "predict-semantic")["metrics"]["ground_truth"]["mIoU"] is not None
    )


def test_predict_instance_with_a_semantic_model_is_a_clear_error(
    semantic_run: Path, tiny_demo: Path
) -> None:
    model = artifacts.stage_dir(semantic_run, "train-semantic") / artifacts.MODEL_BEST
    result = liid(
        "predict",
        "--run",
        semantic_run,
        "--model",
        model,
        "--data",
        tiny_demo / "index_val.json",
        "-q",
    )
    assert_one_line_error(result, "a semantic model", "--task semantic")


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_demo: Path, tmp_path: Path) -> None:
    """DDP with gloo: two processes train one shard each; only rank 0 writes the stage folder."""
    run = tmp_path / "run"
    # `--` stops torchrun from reading liid's --run as an abbreviation of its own --run-path.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "-m",
        "--",
        "liid_cli",
        "train",
        "--run",
        str(run),
        "--data",
        str(tiny_demo / "index_train.json"),
        "--labels",
        str(tiny_demo / "gt_train.json"),
        *TINY_INSTANCE,
        "--set",
        "epochs=2",
        "--set",
        "batch_size=4",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = _manifest(run, "train")["metrics"]
    assert metrics["processes"] == 2 and metrics["epochs"] == 2
    assert [record["epoch"] for record in metrics["history"]] == [1, 2]
    assert sorted(p.name for p in run.iterdir()) == [artifacts.CACHE_DIR, "train"]
    again = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert again.returncode == 0 and "up to date" in again.stderr, again.stderr[-3000:]
