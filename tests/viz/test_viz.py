"""`liid viz`: overlays, palette renderings, grids, a self-contained report.html, partial runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tests.helpers import liid
from tests.stages.test_export import exported, remapped_index  # noqa: F401  (module fixtures)

from liid_cli import artifacts, masks
from liid_cli.data.index import load_index
from liid_cli.fileio import write_json
from liid_cli.viz.overlays import PALETTE, Instance, draw_instances, grid, render_label_map
from liid_cli.viz.pictures import load_instances


def test_overlay_blends_the_class_colour_and_outlines_the_mask() -> None:
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:15, 5:15] = True
    drawn = np.asarray(
        draw_instances(image, [Instance(masks.encode(mask), 2, "")], cell=40, alpha=0.5)
    )
    assert drawn.shape == (40, 40, 3)
    assert drawn[20, 20].tolist() == (PALETTE[2] * 0.5).astype(np.uint8).tolist()  # inside, blended
    assert drawn[10, 20].tolist() == PALETTE[2].tolist()  # on the outline
    assert drawn[2, 2].tolist() == [0, 0, 0]  # outside untouched


def test_label_map_rendering_uses_the_voc_palette() -> None:
    rendered = np.asarray(render_label_map(np.array([[0, 1], [255, 3]], dtype=np.uint8), cell=4))
    assert rendered[0, 0].tolist() == [0, 0, 0]
    assert rendered[0, 3].tolist() == PALETTE[1].tolist()
    assert rendered[3, 0].tolist() == PALETTE[255].tolist()


def test_grid_places_cells_under_titles() -> None:
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    sheet = grid([[red, None]], ["a", "b"], ["row"], cell=10, gap=2)
    assert sheet.size == (2 * 12 + 2, 21 + (21 + 10 + 2) + 2)
    assert sheet.getpixel((2 + 5, 21 + 21 + 5)) == (255, 0, 0)


def test_report_of_an_exported_and_evaluated_run(exported: tuple[Path, dict[str, Any]]) -> None:  # noqa: F811
    run_dir, _ = exported
    assert liid("eval", "instances", "--run", run_dir, "--quiet").exit_code == 0
    assert liid("eval", "semantic", "--run", run_dir, "--quiet").exit_code == 0
    write_json(
        artifacts.eval_metrics_path(run_dir, "proposals"),
        {"kind": "proposals", "name": "proposals", "metrics": {"recall@0.5": 0.5, "ABO": 0.25}},
    )
    result = liid("viz", "--run", run_dir, "--quiet", "--set", "max_images=3", "--set", "cell=64")
    assert result.exit_code == 0, result.output
    report = (run_dir / artifacts.REPORT_HTML).read_text()
    assert "Proposals (%)" in report and "<td class='num'>50.0</td>" in report
    for fragment in (
        "Stage timings",
        "export-coco",
        "cut",
        artifacts.EVAL_PSEUDO,
        "mIoU",
        "<svg",
        "AP50",
        "data:image/png;base64,",
    ):
        assert fragment in report, fragment
    assert not re.search(r"(src|href)=['\"]https?:", report)  # opens offline
    grids = list((run_dir / artifacts.VIZ_DIR).glob("*.png"))
    assert len(grids) == 1
    with Image.open(
        grids[0]
    ) as sheet:  # image, ground truth, pseudo labels, semantic pseudo labels
        assert sheet.size[0] == 4 * (64 + 6) + 6
        assert sheet.size[1] == 21 + 3 * (64 + 21 + 6) + 6


def test_viz_of_a_run_with_no_stage_yet(tiny_demo: Path, tmp_path: Path) -> None:
    result = liid("viz", "--run", tmp_path / "empty", "--quiet")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "empty" / artifacts.REPORT_HTML).read_text()
    assert (
        "No finished stage" in report and "No evaluation yet" in report and "No pictures" in report
    )
    result = liid(
        "viz",
        "--run",
        tmp_path / "data_only",
        "--data",
        artifacts.index_path(tiny_demo, "val"),
        "--quiet",
        "--set",
        "max_images=2",
        "--set",
        "cell=48",
    )
    assert result.exit_code == 0, result.output
    (sheet_path,) = (tmp_path / "data_only" / artifacts.VIZ_DIR).glob("*.png")
    with Image.open(sheet_path) as sheet:  # image and ground truth only
        assert sheet.size[0] == 2 * (48 + 6) + 6


def test_viz_draws_predictions_of_a_trained_model(tiny_demo: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    predict_dir = artifacts.stage_dir(run_dir, "predict")
    predict_dir.mkdir(parents=True)
    index_path = artifacts.index_path(tiny_demo, "val")
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:6, 2:6] = True
    write_json(
        predict_dir / artifacts.PREDICTIONS_JSON,
        [{"image_id": 1, "category_id": 1, "score": 0.8, "segmentation": masks.encode(mask)}],
    )
    write_json(
        predict_dir / artifacts.MANIFEST,
        {
            "stage": "predict",
            "inputs": {"index": {"path": str(index_path)}},
            "timings": {"seconds": 1.5, "finished": 0.0},
            "metrics": {},
        },
    )
    result = liid("viz", "--run", run_dir, "--quiet", "--set", "max_images=2", "--set", "cell=48")
    assert result.exit_code == 0, result.output
    (sheet_path,) = (run_dir / artifacts.VIZ_DIR).glob("*.png")
    with Image.open(sheet_path) as sheet:  # image, ground truth, predictions
        assert sheet.size[0] == 3 * (48 + 6) + 6
    assert "predict" in (run_dir / artifacts.REPORT_HTML).read_text()


def test_predictions_below_min_score_are_not_drawn(tiny_demo: Path, tmp_path: Path) -> None:
    index = load_index(artifacts.index_path(tiny_demo, "val"))
    mask = masks.encode(np.ones((4, 4), dtype=bool))
    path = tmp_path / "predictions.json"
    write_json(
        path,
        [{"image_id": 1, "category_id": 2, "score": s, "segmentation": mask} for s in (0.1, 0.8)],
    )
    drawn = load_instances(path, index, max_instances=5, min_score=0.3, scored=True)
    assert [inst.caption for inst in drawn[1]] == [f"{index.classes.names[1]} 0.80"]
    everything = load_instances(path, index, max_instances=5, min_score=0.0, scored=False)
    assert [inst.label for inst in everything[1]] == [2, 2]
