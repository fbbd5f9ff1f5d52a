"""`liid export-coco`: noise dropped, NMS per class, COCO json for pycocotools and torchvision,
category ids mapped back through ClassMap, palette PNGs painted from the survivors.

The fixture `cut_run` writes proposals.h5 and cut.h5 from the tiny demo's ground truth (each kept
object, a shifted duplicate with a lower score, and noise boxes labelled 0), so the export has a
known answer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from benchmarks.fake_runs import DUPLICATE_SCORE, TRUE_SCORE, make_cut_run
from PIL import Image
from pycocotools.coco import COCO
from tests.helpers import assert_one_line_error, liid

from liid_cli import artifacts, masks
from liid_cli.data.index import load_index
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.evaluation.semantic import label_map_from_instances
from liid_cli.fileio import read_json, write_json
from liid_cli.graph.instance_scores import neighbour_scores
from liid_cli.palette import IGNORE_LABEL
from liid_cli.stages.export_coco import select_instances

COCO_ID_OF_INTERNAL = {
    1: 60,
    2: 50,
    3: 40,
    4: 30,
    5: 20,
    6: 10,
}  # internal id i <-> COCO id 70 - 10 i
def remap_categories(demo: Path, out: Path, split: str = "train") -> Path:
    """A copy of the demo split whose COCO category ids differ from the internal ids."""
    out.mkdir(parents=True, exist_ok=True)
    index = read_json(artifacts.index_path(demo, split))
    gt = read_json(artifacts.gt_path(demo, split))
    old_to_new = {
        c["id"]: COCO_ID_OF_INTERNAL[i] for i, c in enumerate(index["categories"], start=1)
    }
    for document in (index, gt):
        document["categories"] = [dict(c, id=old_to_new[c["id"]]) for c in document["categories"]]
    for image in index["images"]:
        image["labels"] = [old_to_new[c] for c in image["labels"]]
        image["boxes"] = [dict(b, category_id=old_to_new[b["category_id"]]) for b in image["boxes"]]
    for ann in gt["annotations"]:
        ann["category_id"] = old_to_new[ann["category_id"]]
    index["info"]["image_root"] = str((demo / artifacts.IMAGES_DIR).resolve())
    write_json(artifacts.gt_path(out, split), gt)
    write_json(artifacts.index_path(out, split), index)
    return artifacts.index_path(out, split)


@pytest.fixture(scope="module")
def remapped_index(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return remap_categories(tiny_demo, tmp_path_factory.mktemp("remapped"))


@pytest.fixture(scope="module")
def exported(
    remapped_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """A run whose export is done; returns (run folder, the known answer)."""
    run_dir = tmp_path_factory.mktemp("run")
    truth = make_cut_run(remapped_index, run_dir)
    result = liid("export-coco", "--run", run_dir, "--quiet")
    assert result.exit_code == 0, result.output
    return run_dir, truth


def test_cam_agreement_reorders_the_scores_and_p_alone_ignores_it(
    remapped_index: Path, tmp_path: Path
) -> None:
    """Objects at agreement 0.5 score 0.45 < their shifted copies' 0.6 x 1.0, so NMS keeps the
    copies; with `score=p` the objects (0.9) win as before."""
    truth = make_cut_run(remapped_index, tmp_path, agreement=(0.5, 1.0))
    assert liid("export-coco", "--run", tmp_path, "-q").exit_code == 0
    path = artifacts.stage_dir(tmp_path, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    scores = sorted({round(a["score"], 4) for a in read_json(path)["annotations"]})
    assert scores == [DUPLICATE_SCORE]
    assert liid("export-coco", "--run", tmp_path, "--set", "score=p", "-q").exit_code == 0
    exported_ids = {(a["image_id"], a["category_id"]) for a in read_json(path)["annotations"]}
    assert {round(a["score"], 4) for a in read_json(path)["annotations"]} == {TRUE_SCORE}
    assert exported_ids == {(a["image_id"], a["category_id"]) for a in truth["annotations"]}


def test_nms_keeps_higher_score_within_a_class_and_both_across_classes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=np.float32
    )
    scores = np.array([0.5, 0.7, 0.6, 0.9], dtype=np.float32)
    same = select_instances(boxes[:2], scores[:2], np.array([1, 1]), min_score=0.0, nms_iou=0.4)
    assert same.tolist() == [1]
    across = select_instances(
        boxes[:3], scores[:3], np.array([1, 1, 2]), min_score=0.0, nms_iou=0.4
    )
    assert sorted(across.tolist()) == [1, 2]
    noise_and_low = select_instances(
        boxes, scores, np.array([1, 2, 0, 3]), min_score=0.55, nms_iou=0.4
    )
    assert noise_and_low.tolist() == [3, 1]  # best first; noise (0) and the 0.5 box dropped


def test_mask_nms_keeps_interleaved_objects_that_box_nms_merges() -> None:
    # Two combs whose teeth interleave: the same box, disjoint masks; a third mask inside the
    # first (mask IoU 0.75 with it); a fourth like the first but of another class.
    comb_a = np.zeros((20, 20), dtype=bool)
    comb_a[:, 0::2] = True
    comb_b = ~comb_a
    inner = comb_a.copy()
    inner[15:] = False
    rles = [masks.encode(m) for m in (comb_a, comb_b, inner, comb_a)]
    boxes = np.array([masks.box_xyxy(m) for m in (comb_a, comb_b, inner, comb_a)], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    labels = np.array([1, 1, 1, 2])
    by_box = select_instances(boxes, scores, labels, min_score=0.0, nms_iou=0.5)
    by_mask = select_instances(boxes, scores, labels, min_score=0.0, nms_iou=0.5, rles=rles)
    assert by_box.tolist() == [0, 3]
    assert by_mask.tolist() == [0, 1, 3]
    kept_nested = select_instances(boxes, scores, labels, min_score=0.0, nms_iou=0.8, rles=rles)
    assert kept_nested.tolist() == [0, 1, 2, 3]


def test_max_per_class_keeps_each_class_s_best_after_nms() -> None:
    # Five disjoint boxes: three of class 1 (0.9, 0.5, 0.7), two of class 2 (0.8, 0.6).
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], dtype=np.float32)
    scores = np.array([0.9, 0.5, 0.7, 0.8, 0.6], dtype=np.float32)
    labels = np.array([1, 1, 1, 2, 2])
    everything = select_instances(boxes, scores, labels, min_score=0.0, nms_iou=0.4)
    assert everything.tolist() == [0, 3, 2, 4, 1]
    capped = select_instances(boxes, scores, labels, min_score=0.0, nms_iou=0.4, max_per_class=1)
    assert capped.tolist() == [0, 3]
    two = select_instances(boxes, scores, labels, min_score=0.0, nms_iou=0.4, max_per_class=2)
    assert two.tolist() == [0, 3, 2, 4]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_nms_on_the_gpu_keeps_the_same_rows() -> None:
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 80, size=(200, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, size=(200, 2))], axis=1)
    scores = rng.uniform(size=200).astype(np.float32)
    labels = rng.integers(0, 4, size=200)
    on_cpu = select_instances(boxes, scores, labels, min_score=0.1, nms_iou=0.4)
    on_gpu = select_instances(boxes, scores, labels, min_score=0.1, nms_iou=0.4, device="cuda")
    assert on_gpu.tolist() == on_cpu.tolist()


def test_export_reproduces_the_known_instances_with_mapped_category_ids(
    exported: tuple[Path, dict[str, Any]],
    remapped_index: Path,
) -> None:
    run_dir, truth = exported
    document = read_json(
        artifacts.stage_dir(run_dir, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    )
    index = load_index(remapped_index)
    assert [im["id"] for im in document["images"]] == [im["id"] for im in index.images]
    assert document["categories"] == truth["categories"]
    annotations = document["annotations"]
    assert [a["id"] for a in annotations] == list(range(1, len(truth["annotations"]) + 1))
    assert all(a["iscrowd"] == 0 and a["score"] == pytest.approx(TRUE_SCORE) for a in annotations)
    exported_set = {
        (a["image_id"], a["category_id"], a["segmentation"]["counts"]) for a in annotations
    }
    truth_set = {
        (a["image_id"], a["category_id"], masks.encode(masks.decode(a["segmentation"]))["counts"])
        for a in truth["annotations"]
    }
    assert exported_set == truth_set
    assert {a["category_id"] for a in annotations} <= set(COCO_ID_OF_INTERNAL.values())
    metrics = evaluate_instances(truth, document)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["ABO"] == pytest.approx(1.0)
    for ann in annotations:
        mask = masks.decode(ann["segmentation"])
        assert ann["area"] == int(mask.sum())
        assert ann["bbox"] == masks.xyxy_to_xywh(masks.box_xyxy(mask))


def test_exported_json_loads_in_pycocotools_and_torchvision(
    exported: tuple[Path, dict[str, Any]],
    remapped_index: Path,
) -> None:
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2

    path = artifacts.stage_dir(exported[0], "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == len(load_index(remapped_index).images)
    index = load_index(remapped_index)
    dataset = wrap_dataset_for_transforms_v2(
        CocoDetection(str(index.image_root), str(path)),
        target_keys=("image_id", "boxes", "labels", "masks"),
    )
    position = next(
        i for i, image_id in enumerate(dataset.ids) if coco.getAnnIds(imgIds=[image_id])
    )
    _, target = dataset[position]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[target["image_id"]]))
    assert target["labels"].tolist() == [a["category_id"] for a in annotations]
    assert target["masks"].shape[0] == len(annotations)
    assert torch.equal(
        target["masks"][0].bool(), torch.from_numpy(masks.decode(annotations[0]["segmentation"]))
    )
    x, y, w, h = annotations[0]["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h])


def test_semantic_pngs_are_palette_maps_of_the_survivors(
    exported: tuple[Path, dict[str, Any]],
    remapped_index: Path,
) -> None:
    run_dir, truth = exported
    index = load_index(remapped_index)
    folder = artifacts.stage_dir(run_dir, "export-coco") / artifacts.SEMANTIC_DIR
    assert len(list(folder.glob("*.png"))) == len(index.images)
    for image in index.images[:6]:
        anns = [a for a in truth["annotations"] if a["image_id"] == image["id"]]
        expected = label_map_from_instances(
            [a["segmentation"] for a in anns],
            [index.classes.to_internal(a["category_id"]) for a in anns],
            image["height"],
            image["width"],
        )
        with Image.open(folder / f"{image['name']}.png") as png:
            assert png.mode == "P"
            assert np.array_equal(np.asarray(png), expected)


def test_overlap_of_different_classes_is_ignored_and_same_class_kept() -> None:
    left = np.zeros((6, 6), dtype=bool)
    left[:, :4] = True
    right = np.zeros((6, 6), dtype=bool)
    right[:, 2:] = True
    rles = masks.encode_many(np.stack([left, right]))
    painted = label_map_from_instances(rles, [1, 2], 6, 6)
    assert painted[0].tolist() == [1, 1, IGNORE_LABEL, IGNORE_LABEL, 2, 2]
    assert label_map_from_instances(rles, [3, 3], 6, 6)[0].tolist() == [3] * 6
    assert label_map_from_instances(rles, [1, 2], 6, 6, None)[0].tolist() == [1, 1, 2, 2, 2, 2]


def test_highest_score_overlap_and_min_score_from_the_command_line(
    remapped_index: Path,
    tmp_path: Path,
) -> None:
    make_cut_run(remapped_index, tmp_path, solver="argmax")
    result = liid(
        "export-coco",
        "--run",
        tmp_path,
        "--min-score",
        "0.95",
        "--set",
        "semantic_overlap=highest_score",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = read_json(artifacts.stage_dir(tmp_path, "export-coco") / artifacts.MANIFEST)
    assert manifest["metrics"]["instances"] == 0 and manifest["metrics"]["solver"] == "argmax"
    assert manifest["config"]["semantic_overlap"] == "highest_score"


def test_missing_cut_is_a_one_line_error(remapped_index: Path, tmp_path: Path) -> None:
    result = liid("export-coco", "--run", tmp_path, "--data", remapped_index)
    assert_one_line_error(result, "liid proposals")


def test_cut_from_another_index_is_refused(
    remapped_index: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    make_cut_run(remapped_index, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(remapped_index.parent, other)
    index = read_json(other / remapped_index.name)
    index["info"]["name"] = "another"
    write_json(other / remapped_index.name, index)
    result = liid("export-coco", "--run", tmp_path, "--data", other / remapped_index.name)
    assert_one_line_error(result, "liid proposals --run")
    assert json.loads((other / remapped_index.name).read_text())["info"]["name"] == "another"


def test_cam_threshold_baseline_makes_one_instance_per_lit_component() -> None:
    from liid_cli.stages.baselines import cam_threshold_instances

    cam = np.zeros((2, 20, 20), dtype=np.float32)
    cam[0, 2:6, 2:6] = 1.0  # two lit blobs of class 0 ...
    cam[0, 12:18, 12:18] = 0.7
    cam[0, 0, 19] = 0.9  # ... and a one-pixel speck below min_area
    cam[1, 5:10, 0:4] = 0.6  # one blob of class 3
    found = cam_threshold_instances(cam, [0, 3], threshold=0.5, min_area=0.01)
    assert found.labels.tolist() == [1, 1, 4]
    assert np.allclose(found.scores, [1.0, 0.7, 0.6])
    assert found.boxes.tolist()[1] == [12.0, 12.0, 18.0, 18.0]


def test_neighbour_scores_mix_in_the_agreeing_neighbours_mean() -> None:
    scores = np.array([0.8, 0.6, 0.4, 0.2, 0.9], np.float32)
    labels = np.array([1, 1, 2, 1, 0])
    neighbours = np.array([[1, 2, 3], [0, -1, -1], [4, 0, -1], [0, 1, 4], [0, 1, 2]], np.int32)
    mixed = neighbour_scores(scores, labels, neighbours, weight=0.5)
    # SOP 0: neighbours 1 and 3 share label 1 -> mean (0.6 + 0.2) / 3; SOP 2 has no label-2
    # neighbour; noise (label 0) neither votes nor is voted for.
    expected = [0.4 + 0.5 * 0.8 / 3, 0.3 + 0.5 * 0.8 / 3, 0.2, 0.1 + 0.5 * 1.4 / 3, 0.45]
    assert np.allclose(mixed, expected)
    assert np.array_equal(neighbour_scores(scores, labels, neighbours, 0.0), scores)
    assert np.array_equal(neighbour_scores(scores, labels, neighbours[:, :0], 0.5), scores)


def test_neighbour_weight_reorders_scores_but_keeps_the_instances(
    remapped_index: Path, tmp_path: Path
) -> None:
    """Each SOP listed once as its own neighbour: weight 0.5 gives 0.5 s + 0.5 s / 3 = 2/3 s."""
    make_cut_run(remapped_index, tmp_path)
    cut_path = artifacts.stage_dir(tmp_path, "cut") / artifacts.CUT_H5
    with h5py.File(cut_path, "r+") as cut:
        rows = len(cut[artifacts.H5_LABELS])
        table = np.full((rows, 3), -1, np.int32)
        table[:, 0] = np.arange(rows)
        cut.create_dataset(artifacts.H5_NEIGHBOURS, data=table)
    path = artifacts.stage_dir(tmp_path, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    exported = {}
    for weight in (0.0, 0.5):
        result = liid("export-coco", "--run", tmp_path, "--set", f"neighbour_weight={weight}",
                      "--force", "-q")
        assert result.exit_code == 0, result.output
        exported[weight] = {
            (a["image_id"], a["category_id"], a["segmentation"]["counts"]): a["score"]
            for a in read_json(path)["annotations"]
        }
    assert exported[0.0].keys() == exported[0.5].keys() and exported[0.0]
    for key, score in exported[0.0].items():
        assert exported[0.5][key] == pytest.approx(score * 2 / 3, rel=1e-5)
