"""Data set index: the demo generator, the VOC / COCO / folder readers, and their bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tests.helpers import assert_one_line_error, liid

from liid_cli import masks
from liid_cli.data.demo import DemoSpec, generate
from liid_cli.data.index import load_index
from liid_cli.data.voc import VOC_CLASSES
from liid_cli.palette import save_label_png


def test_demo_is_deterministic_and_complete(tiny_demo: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, DemoSpec(n_train=24, n_val=8, size=96, seed=3))
    for name in ("index_train.json", "gt_train.json", "index_val.json"):
        assert (tiny_demo / name).read_bytes() == (again / name).read_bytes()
    index = load_index(tiny_demo / "index_train.json")
    assert index.classes.num_classes >= 5
    assert len(index.images) == 24
    for image in index.images:
        assert index.image_path(image).is_file()
    counts = [len(im["boxes"]) for im in index.images]
    assert max(counts) >= 2 and min(counts) <= 1


def test_demo_labels_agree_with_ground_truth(tiny_demo: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    gt = json.loads((tiny_demo / "gt_train.json").read_text())
    by_image: dict[int, set[int]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], set()).add(ann["category_id"])
        mask = masks.decode(ann["segmentation"])
        assert mask.sum() == ann["area"] > 0
    for image in index.images:
        assert set(image["labels"]) == by_image.get(image["id"], set())


def _self_ap(gt_path: Path) -> float:
    gt = COCO(str(gt_path))
    detections = [dict(ann, score=1.0) for ann in gt.dataset["annotations"]]
    evaluator = COCOeval(gt, gt.loadRes(detections), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0])


def test_demo_ground_truth_scores_ap_one_against_itself(tiny_demo: Path) -> None:
    assert _self_ap(tiny_demo / "gt_train.json") == pytest.approx(1.0)


def test_data_demo_command(tmp_path: Path) -> None:
    result = liid("data", "demo", "--out", tmp_path / "d", "--n-train", 4, "--n-val", 2, "--size", 64, "-q")
    assert result.exit_code == 0, result.output
    assert load_index(tmp_path / "d" / "index_val.json").images


def write_voc_layout(demo: Path, root: Path) -> None:
    """A VOC2012-like folder made from the demo set: JPEGs, XML, instance and class PNGs."""
    gt = json.loads((demo / "gt_train.json").read_text())
    index = load_index(demo / "index_train.json")
    for folder in ("JPEGImages", "Annotations", "SegmentationObject", "SegmentationClass",
                   "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    names = []
    for image in index.images:
        name = f"2007_{image['id']:06d}"
        names.append(name)
        Image.open(index.image_path(image)).convert("RGB").save(root / "JPEGImages" / f"{name}.jpg")
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        objects = np.zeros((image["height"], image["width"]), np.uint8)
        classes = np.zeros_like(objects)
        xml = ET.Element("annotation")
        size = ET.SubElement(xml, "size")
        ET.SubElement(size, "width").text = str(image["width"])
        ET.SubElement(size, "height").text = str(image["height"])
        for number, ann in enumerate(anns, start=1):
            mask = masks.decode(ann["segmentation"])
            objects[mask] = number
            classes[mask] = ann["category_id"]
            obj = ET.SubElement(xml, "object")
            ET.SubElement(obj, "name").text = VOC_CLASSES[ann["category_id"] - 1]
            box = ET.SubElement(obj, "bndbox")
            x, y, w, h = ann["bbox"]
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + w, y + h)):
                ET.SubElement(box, key).text = str(int(value))
        ET.ElementTree(xml).write(root / "Annotations" / f"{name}.xml")
        save_label_png(root / "SegmentationObject" / f"{name}.png", objects)
        save_label_png(root / "SegmentationClass" / f"{name}.png", classes)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(names) + "\n")


def test_voc_reader_round_trips_demo_ground_truth(tiny_demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "VOC2012"
    write_voc_layout(tiny_demo, root)
    result = liid("data", "voc", "--root", root, "--split", "train", "--out", tmp_path / "voc", "-q")
    assert result.exit_code == 0, result.output
    index = load_index(tmp_path / "voc" / "index_train.json")
    demo_index = load_index(tiny_demo / "index_train.json")
    assert [im["labels"] for im in index.images] == [im["labels"] for im in demo_index.images]
    assert index.classes.num_classes == 20
    assert index.image_path(index.images[0]).is_file()
    assert _self_ap(tmp_path / "voc" / "gt_train.json") == pytest.approx(1.0)
    voc_gt = json.loads((tmp_path / "voc" / "gt_train.json").read_text())
    demo_gt = json.loads((tiny_demo / "gt_train.json").read_text())
    assert sorted(a["area"] for a in voc_gt["annotations"]) == sorted(a["area"] for a in demo_gt["annotations"])


def test_coco_reader_keeps_crowd_as_ground_truth(tiny_demo: Path, tmp_path: Path) -> None:
    gt = json.loads((tiny_demo / "gt_train.json").read_text())
    gt["categories"] = [dict(c, id=c["id"] * 10) for c in gt["categories"]]
    for ann in gt["annotations"]:
        ann["category_id"] *= 10
    gt["annotations"][0]["iscrowd"] = 1
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt))
    result = liid("data", "coco", "--annotations", path, "--images", tiny_demo / "images",
                  "--out", tmp_path / "coco", "-q")
    assert result.exit_code == 0, result.output
    index = load_index(tmp_path / "coco" / "index_train.json")
    crowd_image = next(im for im in index.images if im["id"] == gt["annotations"][0]["image_id"])
    assert gt["annotations"][0]["category_id"] in crowd_image["labels"]
    assert index.classes.to_internal(30) == 3 and index.classes.to_category(3) == 30
    kept = json.loads((tmp_path / "coco" / "gt_train.json").read_text())
    assert kept["annotations"][0]["iscrowd"] == 1


def test_coco_parts_are_fixed_disjoint_halves_with_their_own_truth(
    tiny_demo: Path, tmp_path: Path
) -> None:
    gt = json.loads((tiny_demo / "gt_train.json").read_text())
    halves = []
    for part in ("0/2", "1/2"):
        out = tmp_path / part.replace("/", "-")
        result = liid("data", "coco", "--annotations", tiny_demo / "gt_train.json",
                      "--images", tiny_demo / "images", "--out", out, "--part", part, "-q")
        assert result.exit_code == 0, result.output
        ids = [im["id"] for im in load_index(out / "index_train.json").images]
        truth = json.loads((out / "gt_train.json").read_text())
        assert {a["image_id"] for a in truth["annotations"]} <= set(ids)
        assert len(truth["annotations"]) == sum(a["image_id"] in ids for a in gt["annotations"])
        halves.append(ids)
    ranked = sorted(im["id"] for im in gt["images"])
    assert halves == [ranked[0::2], ranked[1::2]]
    result = liid("data", "coco", "--annotations", tiny_demo / "gt_train.json", "--images",
                  tiny_demo / "images", "--out", tmp_path / "bad", "--part", "2/2")
    assert_one_line_error(result, "--part '2/2'", "0 <= i < n")
    assert not (tmp_path / "bad").exists()


def test_folder_reader_with_csv_and_json(tiny_demo: Path, tmp_path: Path) -> None:
    images = tiny_demo / "images"
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("image,labels\ntrain_0000.png,cat;dog\ntrain_0001.png,dog\n")
    result = liid("data", "folder", "--images", images, "--labels", csv_path, "--out", tmp_path / "f", "-q")
    assert result.exit_code == 0, result.output
    index = load_index(tmp_path / "f" / "index_train.json")
    assert [c["name"] for c in index.categories] == ["cat", "dog"]
    assert [im["labels"] for im in index.images] == [[1, 2], [2]]
    json_path = tmp_path / "labels.json"
    json_path.write_text(json.dumps({"train_0002.png": ["zebra"]}))
    result = liid("data", "folder", "--images", images, "--labels", json_path, "--out", tmp_path / "j", "-q")
    assert result.exit_code == 0, result.output


@pytest.fixture
def bad_inputs(tiny_demo: Path, tmp_path: Path) -> dict[str, Path]:
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.png").write_bytes((tiny_demo / "images" / "train_0000.png").read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    paths = {"images": images}
    for name, text in {
        "corrupt.csv": "image,labels\ngood.png,cat\nbroken.png,dog\n",
        "unknown.csv": "image,labels\ngood.png,cat\nmissing.png,dog\n",
        "empty.csv": "image,labels\ngood.png,\n",
    }.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    gt = json.loads((tiny_demo / "gt_train.json").read_text())
    gt["categories"] = gt["categories"][1:]
    paths["nocat.json"] = tmp_path / "nocat.json"
    paths["nocat.json"].write_text(json.dumps(gt))
    (tmp_path / "VOCbroken" / "Annotations").mkdir(parents=True)
    paths["voc"] = tmp_path / "VOCbroken"
    return paths


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["folder", "--images", "{tmp}/nope", "--labels", "{unknown_csv}"], ["nope", "not found"]),
        (["folder", "--images", "{images}", "--labels", "{corrupt_csv}"], ["broken.png", "cannot decode"]),
        (["folder", "--images", "{images}", "--labels", "{unknown_csv}"], ["missing.png", "unknown.csv"]),
        (["folder", "--images", "{images}", "--labels", "{empty_csv}"], ["empty.csv", "label set is empty"]),
        (["voc", "--root", "{voc}"], ["VOCbroken", "JPEGImages"]),
        (["coco", "--annotations", "{nocat_json}", "--images", "{images}"], ["nocat.json", "category_id"]),
        (["coco", "--annotations", "{tmp}/none.json", "--images", "{images}"], ["none.json", "not found"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    bad_inputs: dict[str, Path], tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    values = {key.replace(".", "_"): str(path) for key, path in bad_inputs.items()} | {"tmp": str(tmp_path)}
    out = tmp_path / "out"
    result = liid("data", *[a.format(**values) for a in args], "--out", out, "-q")
    assert_one_line_error(result, *fragments)
    assert not out.exists()
