"""Metrics: COCOeval AP family and ABO, mIoU, proposal kinds, and `liid eval instances | semantic |
labels | compare`."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tests.helpers import assert_one_line_error, liid
from tests.stages.test_export import exported, remapped_index  # noqa: F401  (module fixtures)

from liid_cli import artifacts, masks
from liid_cli.errors import LiidError
from liid_cli.evaluation.instances import average_best_overlap, evaluate_instances
from liid_cli.evaluation.labels import KINDS, region_kinds
from liid_cli.evaluation.semantic import evaluate_semantic
from liid_cli.fileio import read_json, write_json


def _box_mask(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def _hand_made() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Image 1: GT A (cols 0-4, 50 px) and B (rows/cols 6-9, 16 px); image 2: GT C, no prediction.

    Prediction P (cols 0-2, class 1) has IoU 30/50 = 0.6 with A; Q (rows 6-9, cols 8-9, class 2) has
    IoU 8/16 = 0.5 with B although B is class 1: ABO ignores classes. ABO = (0.6 + 0.5 + 0) / 3.
    """
    shape = (10, 10)
    gt_masks = [
        (1, _box_mask(shape, slice(None), slice(0, 5))),
        (1, _box_mask(shape, slice(6, 10), slice(6, 10))),
        (2, _box_mask(shape, slice(0, 3), slice(0, 3))),
    ]
    ground_truth = {
        "images": [
            {"id": 1, "width": 10, "height": 10, "file_name": "a.png"},
            {"id": 2, "width": 10, "height": 10, "file_name": "b.png"},
        ],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": masks.encode(mask),
            }
            for i, (image_id, mask) in enumerate(gt_masks)
        ],
    }
    predictions = [
        {
            "image_id": 1,
            "category_id": 1,
            "score": 0.9,
            "segmentation": masks.encode(_box_mask(shape, slice(None), slice(0, 3))),
        },
        {
            "image_id": 1,
            "category_id": 2,
            "score": 0.8,
            "segmentation": masks.encode(_box_mask(shape, slice(6, 10), slice(8, 10))),
        },
    ]
    return ground_truth, predictions


def test_hand_made_case_gives_the_expected_abo() -> None:
    ground_truth, predictions = _hand_made()
    metrics = evaluate_instances(ground_truth, predictions)
    assert metrics["ABO"] == pytest.approx((0.6 + 0.5 + 0.0) / 3)
    # Class "two" has no ground truth, so AP averages class "one": P matches A at IoU 0.6, recall
    # 1/3 at precision 1 -> 34 of COCO's 101 recall points (0, 0.01, ..., 0.33) at 1, the rest 0.
    assert metrics["AP50"] == pytest.approx(34 / 101)
    assert metrics["AP25"] == pytest.approx(34 / 101)
    assert metrics["AP70"] == 0.0 and metrics["AP75"] == 0.0
    assert metrics["per_class"]["two"]["AP"] is None


def test_average_best_overlap_on_rles() -> None:
    full = masks.encode(np.ones((4, 4), dtype=bool))
    half = masks.encode(_box_mask((4, 4), slice(None), slice(0, 2)))
    assert average_best_overlap([[full, half]], [[half]]) == pytest.approx((0.5 + 1.0) / 2)
    assert average_best_overlap([[full], []], [[], [half]]) == 0.0
    with pytest.raises(ValueError, match="no ground-truth"):
        average_best_overlap([[]], [[half]])


def test_ground_truth_against_itself_is_perfect(tiny_demo: Path) -> None:
    gt_path = artifacts.gt_path(tiny_demo, "train")
    metrics = evaluate_instances(
        gt_path, read_json(gt_path)
    )  # an instances document; no scores -> 1.0
    for key in ("AP", "AP25", "AP50", "AP70", "AP75", "ABO"):
        assert metrics[key] == pytest.approx(1.0), key
    assert metrics["num_predictions"] == metrics["num_ground_truth"] > 0


def _noisy_predictions(gt: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """Ground-truth masks shifted by 0..4 px with random scores, plus misclassified copies."""
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt["annotations"]:
        mask = masks.decode(ann["segmentation"])
        shift = int(rng.integers(0, 5))
        moved = np.zeros_like(mask)
        moved[:, shift:] = mask[:, : mask.shape[1] - shift]
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": masks.encode(moved),
                "score": float(rng.uniform(0.2, 1.0)),
            }
        )
        if rng.uniform() < 0.4:
            wrong = gt["categories"][int(rng.integers(len(gt["categories"])))]["id"]
            results.append(dict(results[-1], category_id=wrong, score=float(rng.uniform(0.0, 1.0))))
    return results


def test_liid_eval_agrees_with_a_direct_pycocotools_computation(
    tiny_demo: Path, tmp_path: Path
) -> None:
    gt_path = artifacts.gt_path(tiny_demo, "train")
    predictions = _noisy_predictions(read_json(gt_path))
    predictions_path = tmp_path / "predictions.json"
    write_json(predictions_path, predictions)
    result = liid(
        "eval",
        "instances",
        "--run",
        tmp_path / "run",
        "--predictions",
        predictions_path,
        "--data",
        artifacts.index_path(tiny_demo, "train"),
        "--name",
        "noisy",
    )
    assert result.exit_code == 0, result.output
    assert "ABO" in result.output and "AP50" in result.output
    record = read_json(artifacts.eval_metrics_path(tmp_path / "run", "noisy"))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        evaluator = COCOeval(
            coco_gt, coco_gt.loadRes(json.loads(predictions_path.read_text())), "segm"
        )
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = record["metrics"]
    assert 0.05 < metrics["AP"] < 0.95  # a non-trivial case
    for key, stat in (("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4)):
        assert metrics[key] == pytest.approx(evaluator.stats[stat], abs=1e-9), key
    assert record["inputs"]["ground_truth"]["path"] == str(gt_path)


def test_empty_prediction_set_gives_zero(tiny_demo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    result = liid(
        "eval",
        "instances",
        "--run",
        tmp_path,
        "--predictions",
        empty,
        "--gt",
        artifacts.gt_path(tiny_demo, "train"),
        "--name",
        "empty",
    )
    assert result.exit_code == 0, result.output
    metrics = read_json(artifacts.eval_metrics_path(tmp_path, "empty"))["metrics"]
    assert metrics["AP"] == metrics["AP50"] == metrics["ABO"] == 0.0


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda p: [dict(p[0], image_id=999)], ("not in", "image_id 999")),
        (lambda p: [dict(p[0], category_id=77)], ("category ids [77]", "do not match")),
        (lambda p: {"categories": [{"id": 1, "name": "one"}], "annotations": p}, ("category set",)),
        (lambda p: {"rows": p}, ("expected a COCO results list",)),
    ],
)
def test_bad_predictions_are_one_line_errors(
    tmp_path: Path, change: Any, fragments: tuple[str, ...]
) -> None:
    ground_truth, predictions = _hand_made()
    gt_path, bad_path = tmp_path / "gt.json", tmp_path / "bad.json"
    write_json(gt_path, ground_truth)
    write_json(bad_path, change(predictions))
    with pytest.raises(LiidError):
        evaluate_instances(gt_path, change(predictions))
    result = liid(
        "eval", "instances", "--run", tmp_path, "--predictions", bad_path, "--gt", gt_path
    )
    assert_one_line_error(result, "bad.json", *fragments)


def test_missing_pseudo_labels_name_the_stage(tmp_path: Path) -> None:
    assert_one_line_error(liid("eval", "instances", "--run", tmp_path), "liid export-coco")
    assert_one_line_error(liid("eval", "compare", tmp_path), "liid eval instances")


def test_semantic_metrics_on_a_hand_made_map() -> None:
    truth = np.array([[0, 0, 1, 1, 255]])
    prediction = np.array([[0, 1, 1, 1, 0]])
    metrics = evaluate_semantic([(truth, prediction)], ["background", "one", "two"])
    # background: TP 1, FN 1 -> 1/2; one: TP 2, FP 1 -> 2/3; two: absent -> undefined.
    assert metrics["per_class"] == {"background": 0.5, "one": pytest.approx(2 / 3), "two": None}
    assert metrics["mIoU"] == pytest.approx((0.5 + 2 / 3) / 2)
    no_class = evaluate_semantic(
        [(np.array([[1, 1]]), np.array([[1, 255]]))], ["background", "one"]
    )
    assert no_class["per_class"]["one"] == 0.5


def test_eval_semantic_and_compare_on_an_exported_run(
    exported: tuple[Path, dict[str, Any]],  # noqa: F811
    tmp_path: Path,
) -> None:
    run_dir, truth = exported
    truth_path = tmp_path / "truth.json"
    write_json(truth_path, truth)
    result = liid("eval", "semantic", "--run", run_dir, "--gt", truth_path)
    assert result.exit_code == 0, result.output
    assert (
        read_json(artifacts.eval_metrics_path(run_dir, artifacts.EVAL_SEMANTIC))["metrics"]["mIoU"]
        == 1.0
    )
    result = liid("eval", "instances", "--run", run_dir, "--gt", truth_path, "--per-class")
    assert result.exit_code == 0, result.output
    assert (
        read_json(artifacts.eval_metrics_path(run_dir, artifacts.EVAL_PSEUDO))["metrics"]["AP50"]
        == 1.0
    )
    partial = liid(
        "eval", "instances", "--run", run_dir
    )  # against the full ground truth of the index
    assert partial.exit_code == 0, partial.output
    full = read_json(artifacts.eval_metrics_path(run_dir, artifacts.EVAL_PSEUDO))["metrics"]
    assert full["ABO"] < 1.0 and full["num_ground_truth"] > len(truth["annotations"])
    result = liid("eval", "compare", run_dir, tmp_path / "missing")
    assert_one_line_error(result, "missing")
    other = tmp_path / "other_run"
    (other / "eval").mkdir(parents=True)
    for name in (artifacts.EVAL_PSEUDO, artifacts.EVAL_SEMANTIC):
        source = artifacts.eval_metrics_path(run_dir, name)
        (other / "eval" / name).mkdir()
        (other / "eval" / name / artifacts.METRICS_JSON).write_text(source.read_text())
    result = liid("eval", "proposals", "--run", run_dir, "--gt", truth_path, "-q")
    assert result.exit_code == 0, result.output
    proposal_ar = read_json(artifacts.eval_metrics_path(run_dir, artifacts.EVAL_PROPOSALS))[
        "metrics"]["AR"]
    table = tmp_path / "docs" / "table.md"
    result = liid("eval", "compare", run_dir, other, "--markdown", table)
    assert result.exit_code == 0, result.output
    assert run_dir.name in result.output and "other_run" in result.output
    assert result.output.count("100.0") >= 2  # mIoU of both runs
    lines = table.read_text().splitlines()
    assert lines[0].startswith("<!-- written by `liid eval compare ") and str(other) in lines[0]
    # only the columns some evaluation has: no `liid eval labels` here, so no whole objects
    assert lines[2] == (
        "| run | evaluation | photos | AP | AP50 | AP75 | ABO | mIoU | proposal AR |")
    proposals_row = next(line for line in lines if f"| {artifacts.EVAL_PROPOSALS} |" in line)
    assert proposals_row.split(" | ")[-1] == f"{100 * proposal_ar:.1f} |"
    semantic_row = next(line for line in lines if f"| other_run | {artifacts.EVAL_SEMANTIC} |" in line)
    assert semantic_row.split(" | ")[7] == "100.0"
    assert semantic_row.split(" | ")[2] == str(len(truth["images"]))


def test_eval_semantic_of_a_trained_model(
    exported: tuple[Path, dict[str, Any]],  # noqa: F811
    tmp_path: Path,
) -> None:
    run_dir, truth = exported
    export_manifest = read_json(artifacts.stage_dir(run_dir, "export-coco") / artifacts.MANIFEST)
    predicted = artifacts.stage_dir(tmp_path, "predict-semantic")
    shutil.copytree(
        artifacts.stage_dir(run_dir, "export-coco") / artifacts.SEMANTIC_DIR,
        predicted / artifacts.SEMANTIC_DIR,
    )
    write_json(predicted / artifacts.MANIFEST, {"inputs": export_manifest["inputs"]})
    (
        predicted
        / artifacts.SEMANTIC_DIR
        / f"{truth['images'][0]['file_name'].rsplit('.', 1)[0]}.png"
    ).unlink()
    result = liid("eval", "semantic", "--run", tmp_path, "--source", "predictions")
    assert_one_line_error(result, "missing", "rerun")
    assert_one_line_error(
        liid("eval", "semantic", "--run", tmp_path / "none", "--source", "predictions"),
        "liid predict-semantic",
    )


def test_region_kinds_on_a_hand_made_image() -> None:
    """A: rows/cols 0-9 (class 1), B: rows/cols 12-19 (class 2); one region of each kind."""
    shape = (20, 20)
    truth = [
        {"segmentation": masks.encode(_box_mask(shape, slice(0, 10), slice(0, 10)))},
        {"segmentation": masks.encode(_box_mask(shape, slice(12, 20), slice(12, 20)))},
    ]
    regions = [
        _box_mask(shape, slice(0, 10), slice(0, 9)),  # IoU 0.9 with A
        _box_mask(shape, slice(0, 5), slice(0, 5)),  # inside A, IoU 0.25
        _box_mask(shape, slice(0, 15), slice(0, 15)),  # all of A, IoU 100/225
        _box_mask(shape, slice(5, 15), slice(5, 15)),  # a quarter of A, 9 px of B
        _box_mask(shape, slice(15, 20), slice(0, 10)),  # touches nothing
    ]
    kinds, classes = region_kinds([masks.encode(r) for r in regions], truth, np.array([1, 2]))
    assert [KINDS[k] for k in kinds] == ["object", "part", "superset", "mixed", "background"]
    assert classes.tolist() == [1, 1, 1, 0, 0]
    kinds, classes = region_kinds([masks.encode(regions[0])], [], np.zeros(0, dtype=np.int64))
    assert [KINDS[k] for k in kinds] == ["background"] and classes.tolist() == [0]


def test_region_kinds_read_polygon_and_uncompressed_rle_truth() -> None:
    """Real COCO ground truth is mostly polygons (and crowds uncompressed RLE)."""
    shape = (20, 20)
    polygon = {"segmentation": [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0, 0.0, 10.0]]}  # rows/cols 0-9
    b_mask = _box_mask(shape, slice(12, 20), slice(12, 20))
    encoded = masks.encode(b_mask)
    fortran = b_mask.astype(np.uint8).flatten(order="F")
    runs = np.diff(np.flatnonzero(np.r_[1, np.diff(fortran) != 0, 1]))
    counts = ([0] if fortran[0] else []) + runs.tolist()
    uncompressed = {"segmentation": {"size": encoded["size"], "counts": counts}}
    regions = [masks.encode(_box_mask(shape, slice(0, 10), slice(0, 9))), encoded]
    kinds, classes = region_kinds(regions, [polygon, uncompressed], np.array([1, 2]))
    assert [KINDS[k] for k in kinds] == ["object", "object"] and classes.tolist() == [1, 2]


def test_eval_labels_on_a_run_with_a_known_cut(
    exported: tuple[Path, dict[str, Any]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The fixture's cut labels every object and its shifted copy right, the noise boxes 0; the
    export keeps exactly the objects."""
    run_dir, truth = exported
    truth_path = tmp_path / "truth.json"
    write_json(truth_path, truth)
    result = liid("eval", "labels", "--run", run_dir, "--gt", truth_path)
    assert result.exit_code == 0, result.output
    assert "where pseudo labels go wrong" in result.output
    metrics = read_json(artifacts.eval_metrics_path(run_dir, artifacts.EVAL_LABELS))["metrics"]
    objects = len(truth["annotations"])
    assert metrics["proposals"] == 2 * objects + 2 * len(truth["images"])
    assert set(metrics["foreground"]) == {"cut"}  # no train-cam / dump in this run
    assert metrics["foreground"]["cut"]["object"] == 1.0
    assert metrics["objects_right_class"]["cut"] == 1.0
    assert all(
        share in (0.0, None) for kind, share in metrics["foreground"]["cut"].items() if kind != "object"
    )
    assert metrics["exported_instances"] == objects
    assert metrics["exported_kinds"]["object"] == 1.0 and metrics["exported_right_class"] == 1.0
    object_proposals = metrics["proposal_kinds"]["object"] * metrics["proposals"]
    assert metrics["exported_objects_ceiling"] == pytest.approx(min(1.0, object_proposals / objects))
    assert "at most 100.0%" in result.output
    assert sum(share or 0.0 for share in metrics["proposal_kinds"].values()) == pytest.approx(1.0)
    table = tmp_path / "compare.md"
    compare = liid("eval", "compare", run_dir, "--markdown", table)
    assert compare.exit_code == 0 and " labels " in compare.output
    header, _, *rows = (
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in table.read_text().splitlines()[2:]
    )
    labels_row = next(cells for cells in rows if cells[1] == "labels")
    # every exported instance a whole object
    assert labels_row[header.index("whole objects")] == "100.0"


def test_eval_labels_without_proposals_names_the_stage(tmp_path: Path) -> None:
    assert_one_line_error(liid("eval", "labels", "--run", tmp_path), "liid proposals")


def test_eval_of_a_data_set_without_truth_is_skipped_with_if_truth(
    tiny_demo: Path, tmp_path: Path
) -> None:
    """A folder of tagged photos has no masks: `--if-truth` notes it and exits 0 (make real)."""
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\ntrain_0000.png,cat\ntrain_0001.png,dog\n")
    assert liid("data", "folder", "--images", tiny_demo / "images", "--labels", labels,
                "--out", tmp_path / "photos", "-q").exit_code == 0
    predictions = tmp_path / "none.json"
    write_json(predictions, [])
    index = tmp_path / "photos" / "index_train.json"
    args = ["eval", "instances", "--run", tmp_path / "run", "--predictions", predictions,
            "--data", index]
    assert_one_line_error(liid(*args), "no ground-truth masks")
    skipped = liid(*args, "--if-truth")
    assert skipped.exit_code == 0 and "skipped:" in skipped.output
