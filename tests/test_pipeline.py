"""Every stage end to end through the CLI on the tiny demo set, chained as `make all` chains them.

Stage-level behaviour is tested beside each stage; this test checks the artifacts connect: each
stage finds its upstream, writes its manifest, and a second pass skips everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from tests.helpers import liid

from liid_cli import artifacts
from liid_cli.fileio import read_json

SHORT = {
    "train-cam": ["--set", "epochs=2"],
    "train-mil": ["--set", "epochs=1", "--set", "lr_step_epochs=1"],
    "train": ["--set", "epochs=1", "--set", "val_every=1"],
}
LIID_STAGES = ["proposals", "train-cam", "train-mil", "dump", "cut", "export-coco"]


def _ok(*args: str | Path) -> None:
    result = liid(*args)
    assert result.exit_code == 0, (args, result.output)


@pytest.fixture(scope="module")
def pipeline(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pipeline") / "run"
    common = ["--run", run, "--profile", "demo"]
    _ok("proposals", "--data", tiny_demo / "index_train.json", *common)
    for stage in LIID_STAGES[1:]:
        _ok(stage, *common, *SHORT.get(stage, []))
    _ok("eval", "instances", "--run", run)
    _ok("eval", "labels", "--run", run)
    _ok("baselines", *common)
    # Mask R-CNN trains on the ground truth here: one epoch of a tiny set may leave no pseudo label.
    _ok("train", *common, *SHORT["train"], "--labels", tiny_demo / "gt_train.json")
    _ok("predict", *common, "--data", tiny_demo / "index_val.json")
    _ok("eval", "instances", "--run", run, "--source", "predictions")
    _ok("viz", *common)
    return run


def test_every_stage_leaves_a_manifest(pipeline: Path) -> None:
    for stage in [*LIID_STAGES, "train", "predict"]:
        manifest = read_json(artifacts.stage_dir(pipeline, stage) / artifacts.MANIFEST)
        assert manifest["stage"] == stage
        assert manifest["seed"] == 0 and manifest["config"] and manifest["versions"]["torch"]


def test_outputs_are_readable(pipeline: Path) -> None:
    pseudo = artifacts.stage_dir(pipeline, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    assert COCO(str(pseudo)).getImgIds()
    predictions = json.loads((artifacts.stage_dir(pipeline, "predict") / artifacts.PREDICTIONS_JSON).read_text())
    assert isinstance(predictions, list)
    for name in (artifacts.EVAL_PSEUDO, artifacts.EVAL_PREDICTIONS):
        metrics = read_json(artifacts.eval_metrics_path(pipeline, name))
        assert metrics
    labels = read_json(artifacts.eval_metrics_path(pipeline, artifacts.EVAL_LABELS))["metrics"]
    assert set(labels["foreground"]) == {"cam", "mil", "cut"}
    report = (pipeline / artifacts.REPORT_HTML).read_text()
    assert "Where pseudo labels go wrong" in report
    assert "<figure class='cam'>" in report  # the demo profile saves CAM heat maps


def test_baselines_are_pseudo_labels_that_eval_takes(pipeline: Path, tiny_demo: Path) -> None:
    folder = artifacts.stage_dir(pipeline, "baselines")
    for name in ("cam_threshold", "best_proposal", "no_graph"):
        path = folder / name / artifacts.PSEUDO_INSTANCES_JSON
        _ok("eval", "instances", "--run", pipeline, "--predictions", path, "--name", f"b_{name}")
        assert "AP50" in read_json(artifacts.eval_metrics_path(pipeline, f"b_{name}"))["metrics"]
    # best_proposal: exactly one instance per labelled class of every image.
    index = read_json(tiny_demo / "index_train.json")
    labelled = {(im["id"], label) for im in index["images"] for label in im["labels"]}
    best = read_json(folder / "best_proposal" / artifacts.PSEUDO_INSTANCES_JSON)["annotations"]
    assert sorted((a["image_id"], a["category_id"]) for a in best) == sorted(labelled)


def test_second_pass_skips_every_stage(pipeline: Path) -> None:
    before = {s: read_json(artifacts.stage_dir(pipeline, s) / artifacts.MANIFEST)["timings"]
              for s in LIID_STAGES}
    for stage in LIID_STAGES[1:]:
        _ok(stage, "--run", pipeline, "--profile", "demo", *SHORT.get(stage, []))
    after = {s: read_json(artifacts.stage_dir(pipeline, s) / artifacts.MANIFEST)["timings"]
             for s in LIID_STAGES}
    assert after == before


def test_ablation_reruns_only_what_a_variant_changes(pipeline: Path, tmp_path: Path) -> None:
    _ok("ablation", "--run", pipeline, "--profile", "demo", "--out", tmp_path / "abl",
        "--only", "no_graph", "--only", "delta_1")
    variant = tmp_path / "abl" / "no_graph"
    assert artifacts.stage_dir(variant, "dump").is_symlink()
    cut = read_json(artifacts.stage_dir(variant, "cut") / artifacts.MANIFEST)
    assert cut["config"]["solver"] == "argmax"
    for name in ("no_graph", "delta_1"):
        record = read_json(artifacts.eval_metrics_path(pipeline, f"ablation_{name}"))
        assert record["kind"] == "instances" and "AP50" in record["metrics"]
