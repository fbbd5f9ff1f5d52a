"""`make real` and `make real-train` as a user runs them, on tiny sets: photos with tags only, and
COCO files with a second set to validate Mask R-CNN on (the demo profile, for speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from tests.helpers import tagged_folder

from liid_cli import artifacts
from liid_cli.fileio import read_json

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not (ROOT / ".venv" / ".installed").is_file(), reason="needs the environment `make env` makes"
)


def make(target: str, **variables: str | Path) -> str:
    settings = [f"{key}={value}" for key, value in variables.items()]
    result = subprocess.run(
        ["make", "--no-print-directory", target, "REAL_PROFILE=demo",
         f"LIID={sys.executable} -m liid_cli", *settings],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _report(run: Path) -> str:
    return (run / artifacts.REPORT_HTML).read_text()


def test_tags_only_photos_get_a_report_of_pseudo_masks(tiny_demo: Path, tmp_path: Path) -> None:
    photos, labels = tagged_folder(tiny_demo / "index_train.json", tmp_path / "train")
    val_photos, _ = tagged_folder(tiny_demo / "index_val.json", tmp_path / "val")
    run = tmp_path / "run"
    make("real", FOLDER=photos, LABELS=labels, RUN=run)
    make("real-train", FOLDER=photos, LABELS=labels, VAL_FOLDER=val_photos, RUN=run)
    assert not (run / artifacts.EVAL_DIR / artifacts.EVAL_PSEUDO).exists()  # nothing to score
    report = _report(run)
    assert "no ground-truth masks, so nothing is scored" in report
    assert "alt='folder / train'" in report and "alt='folder / photos'" in report
    for model in ("liid", "no_graph"):
        predictions = read_json(run / artifacts.VAL_DIR / model / artifacts.PREDICTIONS_JSON)
        assert isinstance(predictions, list)
    assert sorted(artifacts.val_runs(run)) == ["liid", "no_graph"]


def test_mask_rcnn_is_scored_on_photos_it_never_saw(tiny_demo: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = make(
        "real-train",
        COCO=tiny_demo / "gt_train.json", IMAGES=tiny_demo / "images",
        VAL_COCO=tiny_demo / "gt_val.json", VAL_IMAGES=tiny_demo / "images", RUN=run,
    )
    truth = COCO(str(run / artifacts.VAL_DIR / "data" / "gt_val.json"))
    for model in ("liid", "ground-truth", "no_graph"):
        folder = run / artifacts.VAL_DIR / model
        predictions = read_json(folder / artifacts.PREDICTIONS_JSON)
        assert {p["image_id"] for p in predictions} <= set(truth.getImgIds())
        record = read_json(artifacts.eval_metrics_path(folder, artifacts.EVAL_PREDICTIONS))
        assert record["inputs"]["ground_truth"]["path"].endswith("gt_val.json")
        assert 0.0 <= record["metrics"]["AP50"] <= 1.0
    assert "ground-truth" in out and "AP50" in out  # the side-by-side table
    report = _report(run)
    assert "val ground-truth: predictions" in report and "alt='coco / val'" in report


@pytest.mark.slow  # two `make real` runs: run with `pytest -m slow`
def test_learning_curve_runs_nested_parts_side_by_side(tiny_demo: Path, tmp_path: Path) -> None:
    run = tmp_path / "curve"
    out = make(
        "learning-curve", COCO=tiny_demo / "gt_train.json", IMAGES=tiny_demo / "images",
        RUN=run, CURVE_PARTS="0/2 0/1",
    )
    half, whole = (tmp_path / f"curve-{part}" for part in ("0of2", "0of1"))
    photos = [
        {image["id"] for image in read_json(folder / "data" / "index_train.json")["images"]}
        for folder in (half, whole)
    ]
    assert photos[0] < photos[1] and len(photos[0]) == (len(photos[1]) + 1) // 2
    for folder, ids in zip((half, whole), photos, strict=True):
        record = read_json(artifacts.eval_metrics_path(folder, artifacts.EVAL_PSEUDO))
        assert record["metrics"]["num_images"] == len(ids)
    assert "runs side by side" in out and "AP50" in out
