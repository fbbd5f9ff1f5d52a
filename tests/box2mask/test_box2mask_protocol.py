"""The second method's protocol: the class split (no target-class mask reaches training), the
full-supervision reference, labelling a data set of classes the model never saw, and the table
that lines the methods up (`liid eval box2mask`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.helpers import assert_one_line_error, liid

from liid_cli import artifacts, masks
from liid_cli.box2mask import rounds, training
from liid_cli.data.index import load_index
from liid_cli.fileio import read_json

SOURCES = {"ellipse", "rectangle", "triangle"}
TARGETS = ["star", "cross", "ring"]
TINY = ("--profile", "demo", "-q")
TINY_TRAINING = ("--set", "iterations=2", "--set", "batch_size=4", "--set", "crop_size=32")
TINY_ROUND = (
    "--set", "retrain_iterations=2", "--set", "semantic.iterations=2",
    "--set", "semantic.batch_size=4", "--set", "semantic.input_size=64",
)  # fmt: skip


def _train(run: Path, index: Path, *extra: str) -> None:
    result = liid("train-box2mask", "--run", run, "--data", index, *TINY_TRAINING, *TINY, *extra)
    assert result.exit_code == 0, result.output


def _label(run: Path, index: Path, *extra: str | Path) -> dict[str, Any]:
    result = liid("box2mask", "--run", run, "--data", index, *TINY, *extra)
    assert result.exit_code == 0, result.output
    return read_json(artifacts.stage_dir(run, "box2mask") / artifacts.MANIFEST)["metrics"]


def test_no_target_class_mask_reaches_training(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spy on everything box-to-mask and the rounds' FCN learn from: box-to-mask crops come from
    source classes only, and the FCN's target-class masks are the pseudo masks, never the truth."""
    index = tiny_demo / "index_train.json"
    cropped: list[set[str]] = []
    taught: list[dict[str, Any]] = []
    crop_init, train_semantic = training.CropDataset.__init__, rounds.train_semantic

    def spy_crops(self: training.CropDataset, instances: list, *args: Any, **kwargs: Any) -> None:
        cropped.append({instance.class_name for instance in instances})
        crop_init(self, instances, *args, **kwargs)

    def spy_semantic(images: list, *args: Any, **kwargs: Any) -> Any:
        taught.extend(rle for image in images for rle, _ in image.instances)
        return train_semantic(images, *args, **kwargs)

    monkeypatch.setattr(training.CropDataset, "__init__", spy_crops)
    monkeypatch.setattr(rounds, "train_semantic", spy_semantic)
    run = tmp_path / "run"
    _train(run, index)
    _label(run, index, "--rounds", "2", *TINY_ROUND)
    assert len(cropped) == 2 and all(classes == SOURCES for classes in cropped)

    truth = read_json(tiny_demo / "gt_train.json")
    names = {c["id"]: c["name"] for c in truth["categories"]}
    target_truth = {
        masks.segmentation_rle(a["segmentation"], *a["segmentation"]["size"])["counts"]
        for a in truth["annotations"]
        if names[a["category_id"]] in TARGETS
    }
    first_round = read_json(
        artifacts.stage_dir(run, "box2mask") / artifacts.BOX2MASK_ROUNDS_DIR / "round_1"
        / artifacts.PSEUDO_INSTANCES_JSON
    )  # fmt: skip
    pseudo = {a["segmentation"]["counts"] for a in first_round["annotations"]}
    taught_counts = {masks.segmentation_rle(rle, *rle["size"])["counts"] for rle in taught}
    assert pseudo and {c.encode() if isinstance(c, str) else c for c in pseudo} <= taught_counts
    assert not target_truth & taught_counts


def test_full_supervision_reference_is_scored_on_the_weak_runs_classes(
    tiny_demo: Path, tmp_path: Path
) -> None:
    index = tiny_demo / "index_train.json"
    full = tmp_path / "compare" / "full"
    _train(full, index, "--set", "source_classes=all")
    checkpoint = torch.load(
        artifacts.stage_dir(full, "train-box2mask") / artifacts.BOX2MASK_CHECKPOINT,
        weights_only=True,
    )
    assert set(checkpoint["source_classes"]) == SOURCES | set(TARGETS)
    refused = liid("box2mask", "--run", full, "--data", index, *TINY)
    assert_one_line_error(refused, "no class to label", "--allow-seen-classes")
    metrics = _label(full, index, "--allow-seen-classes")  # every class of the data set
    assert metrics["weakly_supervised"] is False
    assert sorted(metrics["seen_classes_labelled"]) == sorted(SOURCES | set(TARGETS))
    weak = tmp_path / "compare" / "learned"
    _train(weak, index)
    _label(weak, index)
    weak_model = artifacts.stage_dir(weak, "train-box2mask") / artifacts.BOX2MASK_CHECKPOINT
    rect = _label(
        tmp_path / "compare" / "rect", index, "--baseline", "rect", "--targets-of", weak_model
    )
    assert rect["target_classes"] == TARGETS  # the boxes the weak model labels, not every class
    result = liid("eval", "box2mask", tmp_path / "compare")
    assert result.exit_code == 0, result.output
    records = {
        method: read_json(artifacts.eval_metrics_path(tmp_path / "compare", method))["metrics"]
        for method in ("full", "learned", "rect")
    }
    assert records["full"]["weakly_supervised"] is False
    for record in records.values():  # the reference is re-scored on the weak runs' classes
        assert record["classes"] == sorted(TARGETS) and set(record["per_class_IoU"]) == set(TARGETS)


def _folder_data_set(tiny_demo: Path, folder: Path, tag: str) -> tuple[Path, Path]:
    """A folder+CSV data set of three demo photos tagged `tag`, and COCO boxes made for the same
    photos elsewhere (their own image and category ids)."""
    demo = load_index(tiny_demo / "index_train.json")
    photos = folder / "photos"
    photos.mkdir(parents=True)
    chosen = demo.images[:3]
    for image in chosen:
        shutil.copy(demo.image_path(image), photos / image["file_name"])
    (folder / "labels.csv").write_text(
        "image,labels\n" + "".join(f"{image['file_name']},{tag}\n" for image in chosen)
    )
    result = liid("data", "folder", "--images", photos, "--labels", folder / "labels.csv",
                  "--out", folder / "data")  # fmt: skip
    assert result.exit_code == 0, result.output
    boxes = {
        "images": [
            {"id": 100 + n, "file_name": image["file_name"]} for n, image in enumerate(chosen)
        ],
        "categories": [{"id": 42, "name": tag}],
        "annotations": [
            {"id": n + 1, "image_id": 100 + n, "category_id": 42, "bbox": image["boxes"][0]["bbox"]}
            for n, image in enumerate(chosen)
        ],
    }
    (folder / "boxes.json").write_text(json.dumps(boxes))
    return next((folder / "data").glob("index_*.json")), folder / "boxes.json"


def test_a_model_labels_a_folder_of_unseen_classes_from_coco_boxes(
    tiny_demo: Path, tmp_path: Path
) -> None:
    model_run = tmp_path / "model"
    _train(model_run, tiny_demo / "index_train.json")
    model = artifacts.stage_dir(model_run, "train-box2mask") / artifacts.BOX2MASK_CHECKPOINT
    index, boxes = _folder_data_set(tiny_demo, tmp_path / "widgets", "widget")
    metrics = _label(tmp_path / "labelled", index, "--model", model, "--boxes", boxes)
    assert metrics["target_classes"] == ["widget"] and metrics["weakly_supervised"] is True
    document = read_json(
        artifacts.stage_dir(tmp_path / "labelled", "box2mask") / artifacts.PSEUDO_INSTANCES_JSON
    )
    assert len(document["annotations"]) == 3
    assert all(masks.area(a["segmentation"]) > 0 for a in document["annotations"])

    seen_index, seen_boxes = _folder_data_set(tiny_demo, tmp_path / "ellipses", "ellipse")
    refused = liid("box2mask", "--run", tmp_path / "seen", "--data", seen_index, "--model", model,
                   "--boxes", seen_boxes, "--set", "target_classes=[ellipse]", *TINY)  # fmt: skip
    assert_one_line_error(refused, "refusing to label ['ellipse']")


def test_eval_box2mask_lines_the_methods_up(tiny_demo: Path, tmp_path: Path) -> None:
    index = tiny_demo / "index_train.json"
    for method in ("rect", "ellipse"):
        _label(tmp_path / "cmp" / method, index, "--baseline", method)
    result = liid("eval", "box2mask", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "rect" in result.output and "ellipse" in result.output
    records = {
        m: read_json(artifacts.eval_metrics_path(tmp_path / "cmp", m)) for m in ("rect", "ellipse")
    }
    for record in records.values():
        assert record["kind"] == "box2mask" and record["metrics"]["weakly_supervised"] is True
        assert 0 < record["metrics"]["mIoU"] <= 1
    # the demo's shapes are round-ish: the inscribed ellipse fits them better than the box
    assert records["ellipse"]["metrics"]["mIoU"] > records["rect"]["metrics"]["mIoU"]
    report = liid("viz", "--run", tmp_path / "cmp", "--profile", "demo", "-q")
    assert report.exit_code == 0, report.output
    text = (tmp_path / "cmp" / artifacts.REPORT_HTML).read_text()
    assert "Box-to-mask on the target classes" in text and "ellipse" in text
    empty = liid("eval", "box2mask", tmp_path / "nothing")
    assert_one_line_error(empty, "no box-to-mask runs")
