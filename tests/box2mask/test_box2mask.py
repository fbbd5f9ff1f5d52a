"""`liid train-box2mask` and `liid box2mask` end to end on the tiny demo set, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers import assert_one_line_error, liid

from liid_cli import artifacts, masks
from liid_cli.data.index import load_index
from liid_cli.fileio import read_json
from liid_cli.palette import read_label_png

TINY_TRAINING = (
    "--profile",
    "demo",
    "--set",
    "iterations=3",
    "--set",
    "batch_size=4",
    "--set",
    "crop_size=32",
)
TARGETS = {"star", "cross", "ring"}


@pytest.fixture(scope="module")
def trained(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("box2mask") / "run"
    result = liid(
        "train-box2mask",
        "--run",
        run,
        "--data",
        tiny_demo / "index_train.json",
        *TINY_TRAINING,
        "-q",
    )
    assert result.exit_code == 0, result.output
    return run


def _metrics(run: Path, stage: str = "box2mask") -> dict:
    return read_json(artifacts.stage_dir(run, stage) / artifacts.MANIFEST)["metrics"]


def test_train_records_source_classes(trained: Path) -> None:
    checkpoint = torch.load(
        artifacts.stage_dir(trained, "train-box2mask") / artifacts.BOX2MASK_CHECKPOINT,
        weights_only=True,
    )
    assert checkpoint["source_classes"] == ["ellipse", "rectangle", "triangle"]
    assert checkpoint["in_channels"] == 4
    metrics = _metrics(trained, "train-box2mask")
    assert metrics["source_instances"] == sum(metrics["source_instances_per_class"].values()) > 0


def test_label_target_classes_only(trained: Path, tiny_demo: Path) -> None:
    index_path = tiny_demo / "index_train.json"
    result = liid("box2mask", "--run", trained, "--data", index_path, "--profile", "demo", "-q")
    assert result.exit_code == 0, result.output
    folder = artifacts.stage_dir(trained, "box2mask")
    document = read_json(folder / artifacts.PSEUDO_INSTANCES_JSON)
    index = load_index(index_path)
    names = {c["id"]: c["name"] for c in index.categories}
    expected = sum(
        names[b["category_id"]] in TARGETS for image in index.images for b in image["boxes"]
    )
    assert len(document["annotations"]) == expected
    assert {names[a["category_id"]] for a in document["annotations"]} <= TARGETS
    assert [a["id"] for a in document["annotations"]] == list(range(1, expected + 1))
    assert document["images"] == index.images and document["categories"] == index.categories
    for annotation in document["annotations"]:
        assert annotation["area"] == masks.area(annotation["segmentation"]) > 0
    metrics = _metrics(trained)
    assert metrics["weakly_supervised"] is True and metrics["target_classes"] == [
        "star",
        "cross",
        "ring",
    ]
    assert metrics["boxes"]["not_target_class"] == metrics["boxes"]["read"] - expected
    assert 0 <= metrics["final"]["ground_truth_eval"]["mIoU"] <= 1
    labels = read_label_png(folder / artifacts.SEMANTIC_DIR / f"{index.images[0]['name']}.png")
    assert labels.shape == (index.images[0]["height"], index.images[0]["width"])
    internal_targets = {index.classes.to_internal(c) for c, n in names.items() if n in TARGETS}
    assert set(np.unique(labels)) <= {0, 255} | internal_targets

    first = read_json(folder / artifacts.MANIFEST)
    again = liid("box2mask", "--run", trained, "--data", index_path, "--profile", "demo", "-q")
    assert again.exit_code == 0
    assert (
        read_json(folder / artifacts.MANIFEST)["timings"] == first["timings"]
    )  # skipped: unchanged


def test_seen_classes_refused_unless_allowed(trained: Path, tiny_demo: Path) -> None:
    index_path = tiny_demo / "index_train.json"
    refused = liid(
        "box2mask",
        "--run",
        trained,
        "--data",
        index_path,
        "--profile",
        "demo",
        "-q",
        "--set",
        "target_classes=[ellipse,star]",
    )
    assert_one_line_error(refused, "refusing to label ['ellipse']", "--allow-seen-classes")
    allowed = liid(
        "box2mask",
        "--run",
        trained,
        "--data",
        index_path,
        "--profile",
        "demo",
        "-q",
        "--set",
        "target_classes=[ellipse,star]",
        "--allow-seen-classes",
    )
    assert allowed.exit_code == 0, allowed.output
    metrics = _metrics(trained)
    assert metrics["weakly_supervised"] is False and metrics["seen_classes_labelled"] == ["ellipse"]


def test_two_rounds_feed_score_maps(trained: Path, tiny_demo: Path) -> None:
    result = liid(
        "box2mask",
        "--run",
        trained,
        "--data",
        tiny_demo / "index_train.json",
        "--profile",
        "demo",
        "--rounds",
        "2",
        "--set",
        "retrain_iterations=2",
        "--set",
        "semantic.iterations=2",
        "--set",
        "semantic.batch_size=4",
        "--set",
        "semantic.input_size=64",
        "-q",
    )
    assert result.exit_code == 0, result.output
    metrics = _metrics(trained)
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert "semantic_loss" in metrics["rounds"][1] and "ground_truth_eval" in metrics["rounds"][1]
    rounds = artifacts.stage_dir(trained, "box2mask") / artifacts.BOX2MASK_ROUNDS_DIR
    second = torch.load(rounds / "round_2" / artifacts.BOX2MASK_CHECKPOINT, weights_only=True)
    assert second["in_channels"] == 5 and second["source_classes"] == [
        "ellipse",
        "rectangle",
        "triangle",
    ]
    assert (rounds / "round_1" / artifacts.PSEUDO_INSTANCES_JSON).is_file()
    # a 5-channel model needs score maps that only --rounds provides
    alone = liid(
        "box2mask",
        "--run",
        trained,
        "--data",
        tiny_demo / "index_train.json",
        "--profile",
        "demo",
        "--model",
        rounds / "round_2" / artifacts.BOX2MASK_CHECKPOINT,
        "-q",
    )
    assert_one_line_error(alone, "takes a class score map (5 input channels)")


def test_rect_baseline_with_clipped_and_empty_boxes(tiny_demo: Path, tmp_path: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    image = index.images[0]
    boxes = [
        {"image_id": image["id"], "category_id": 4, "bbox": [-4, -4, 14, 24]},  # clipped to 10 x 20
        {"image_id": image["id"], "category_id": 4, "bbox": [5, 5, 10, 0]},  # empty
        {
            "image_id": image["id"],
            "category_id": 5,
            "bbox": [image["width"] + 3, 0, 5, 5],
        },  # outside
    ]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    run = tmp_path / "run"
    result = liid(
        "box2mask",
        "--run",
        run,
        "--data",
        tiny_demo / "index_train.json",
        "--profile",
        "demo",
        "--baseline",
        "rect",
        "--boxes",
        path,
    )
    assert result.exit_code == 0, result.output
    assert "1 clipped" in result.output and "2 empty" in result.output
    document = read_json(artifacts.stage_dir(run, "box2mask") / artifacts.PSEUDO_INSTANCES_JSON)
    assert [(a["area"], a["bbox"]) for a in document["annotations"]] == [
        (200, [0.0, 0.0, 10.0, 20.0])
    ]
    metrics = _metrics(run)
    assert metrics["boxes"] == {
        "read": 3,
        "clipped": 1,
        "empty_skipped": 2,
        "not_target_class": 0,
        "labelled": 1,
    }


def test_bad_model_input(tiny_demo: Path, tmp_path: Path) -> None:
    index_path = tiny_demo / "index_train.json"
    missing = liid("box2mask", "--run", tmp_path / "run", "--data", index_path, "--profile", "demo")
    assert_one_line_error(missing, "run `liid train-box2mask", "--baseline")
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    result = liid(
        "box2mask",
        "--run",
        tmp_path / "run",
        "--data",
        index_path,
        "--profile",
        "demo",
        "-q",
        "--model",
        other,
    )
    assert_one_line_error(result, "not a box-to-mask checkpoint")
    rounds = liid(
        "box2mask",
        "--run",
        tmp_path / "run",
        "--data",
        index_path,
        "--profile",
        "demo",
        "--baseline",
        "ellipse",
        "--rounds",
        "2",
        "-q",
    )
    assert_one_line_error(rounds, "--rounds 2 needs the learned model")
    no_source = liid(
        "train-box2mask",
        "--run",
        tmp_path / "run",
        "--data",
        index_path,
        "--profile",
        "demo",
        "--set",
        "source_classes=[moon]",
        "-q",
    )
    assert_one_line_error(no_source, "source_classes ['moon']")
