"""Input that used to be read silently wrong: image modes and orientation, label files, COCO."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers import assert_one_line_error, liid

from liid_cli.data.images import displayed_size, image_size, read_rgb
from liid_cli.data.index import load_index


def _folder(tmp_path: Path, **images: Image.Image) -> Path:
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for name, image in images.items():
        image.save(folder / name.replace("_", "."))
    return folder


def _rgb(height: int = 12, width: int = 16) -> Image.Image:
    return Image.fromarray(np.full((height, width, 3), 120, np.uint8))


def test_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path: Path) -> None:
    values = (np.arange(32 * 48).reshape(32, 48) * 40).astype(np.uint16)  # 0 .. 61400
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    pixels = read_rgb(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 48, 3)
    assert np.array_equal(pixels[..., 0], (values >> 8).astype(np.uint8))
    assert np.array_equal(pixels[..., 0], pixels[..., 2]) and pixels.min() == 0 and pixels.max() == 239


def test_exif_orientation_is_applied_to_pixels_and_size(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # stored landscape: red left half, blue right half
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: portrait, red on top
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    pixels = read_rgb(path)
    assert pixels.shape == (40, 20, 3) and image_size(path) == displayed_size(path) == (20, 40)
    assert pixels[:18, :, 0].mean() > 240 and pixels[:18, :, 2].mean() < 15
    assert pixels[22:, :, 2].mean() > 240 and pixels[22:, :, 0].mean() < 15


def test_transparency_palette_and_grey_modes_read_as_displayed(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png")
    Image.new("LA", (3, 3), (50, 0)).save(tmp_path / "clear.png")
    Image.new("RGBA", (3, 3), (0, 0, 0, 128)).save(tmp_path / "half.png")
    Image.new("L", (3, 3), 77).save(tmp_path / "grey.png")
    read = read_rgb(tmp_path / "palette.png")
    assert read[0, 0].tolist() == [10, 200, 30] and read[1, 1].tolist() == [255, 255, 255]
    assert read_rgb(tmp_path / "clear.png")[0, 0].tolist() == [255, 255, 255]  # shown over white
    assert read_rgb(tmp_path / "half.png")[0, 0].tolist() == [127, 127, 127]
    assert read_rgb(tmp_path / "grey.png")[0, 0].tolist() == [77, 77, 77]


def test_folder_index_records_the_displayed_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    images = _folder(tmp_path)
    _rgb(12, 16).save(images / "turned.jpg", exif=exif)
    Image.fromarray(np.full((10, 14), 30000, np.uint16)).save(images / "deep.png")
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\nturned.jpg,cat\ndeep.png,dog\n")
    result = liid("data", "folder", "--images", images, "--labels", labels, "--out", tmp_path / "f")
    assert result.exit_code == 0, result.output
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in
             load_index(tmp_path / "f" / "index_train.json").images}
    assert sizes == {"turned.jpg": (12, 16), "deep.png": (14, 10)}
    assert {"cat 1 image", "dog 1 image"} <= {" ".join(line.split()) for line in result.output.splitlines()}


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """An image folder with a.png, b.png, c.png (tmp_path/images)."""
    return _folder(tmp_path, a_png=_rgb(), b_png=_rgb(), c_png=_rgb())


def _folder_run(images: Path, labels: Path, *extra: str | Path) -> tuple[object, Path]:
    out = labels.parent / "out"
    return liid("data", "folder", "--images", images, "--labels", labels, *extra, "--out", out, "-q"), out


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        ("twice.csv", "image,labels\na.png,cat\nb.png,dog\na.png,bird\n",
         ["twice.csv", "'a.png'", "line 2 and line 4", "merge its tags"]),
        ("twice.json", '{"a.png": ["cat"], "a.png": ["bird"]}', ["twice.json", "'a.png'", "listed twice"]),
        ("number.json", '{"a.png": ["cat"], "b.png": 3}',
         ["number.json", "'b.png'", "must be a list of class names", "the number 3"]),
        ("string.json", '{"a.png": "people;cat"}',
         ["string.json", "'a.png'", '["people", "cat"]', 'the string "people;cat"']),
        ("nested.json", '{"a.png": [["cat"]]}', ["nested.json", "'a.png'", "non-text items"]),
        ("blank.csv", "image,labels\n,cat\n", ["blank.csv", "line 2 has no image name"]),
    ],
)
def test_bad_label_files_are_one_line_errors(
    labelled: Path, tmp_path: Path, name: str, text: str, fragments: list[str]
) -> None:
    labels = tmp_path / name
    labels.write_text(text)
    result, out = _folder_run(labelled, labels)
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_latin1_csv_is_one_line_error(labelled: Path, tmp_path: Path) -> None:
    labels = tmp_path / "latin.csv"
    labels.write_bytes("image,labels\na.png,caf\xe9\n".encode("latin-1"))
    result, out = _folder_run(labelled, labels)
    assert_one_line_error(result, "latin.csv", "not UTF-8", "save the file as UTF-8")
    assert not out.exists()


def test_csv_and_json_with_byte_order_mark_are_read(labelled: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes("image,labels\r\na.png,cat;dog\r\nb.png,dog\r\n".encode("utf-8-sig"))
    result, out = _folder_run(labelled, csv_path)
    assert result.exit_code == 0, result.output
    assert [im["labels"] for im in load_index(out / "index_train.json").images] == [[1, 2], [2]]
    json_path = tmp_path / "bom.json"
    json_path.write_bytes(json.dumps({"c.png": ["cat"]}).encode("utf-8-sig"))
    assert _folder_run(labelled, json_path)[0].exit_code == 0


def test_classes_are_listed_and_a_likely_typo_is_named(labelled: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\na.png,person\nb.png,person;dog\nc.png,peson\n")
    out = tmp_path / "out"
    result = liid("data", "folder", "--images", labelled, "--labels", labels, "--out", out)
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    assert {"dog 1 image", "peson 1 image", "person 2 images"} <= set(lines)
    assert "'peson'" in result.output and "typo" in result.output and "'person'" in result.output


def test_class_list_checks_every_tag_and_fixes_the_ids(labelled: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\na.png,person\nb.png,dog\nc.png,peson\n")
    result, out = _folder_run(labelled, labels, "--classes", "person,dog,cat")
    assert_one_line_error(result, "labels.csv", "'c.png'", "'peson'", "did you mean 'person'?",
                          "--classes")
    assert not out.exists()
    labels.write_text("image,labels\na.png,person\nb.png,dog\n")
    names = tmp_path / "classes.txt"
    names.write_text("person\ndog\ncat\n")
    result, out = _folder_run(labelled, labels, "--classes", names)
    assert result.exit_code == 0, result.output
    index = load_index(out / "index_train.json")
    assert [c["name"] for c in index.categories] == ["person", "dog", "cat"]
    assert [im["labels"] for im in index.images] == [[1], [2]]
    names.write_text("dog\ndog\n")
    assert_one_line_error(_folder_run(labelled, labels, "--classes", names)[0], "classes.txt", "'dog'",
                          "listed twice")


def test_coco_annotation_of_an_unknown_image_is_one_line_error(tiny_demo: Path, tmp_path: Path) -> None:
    document = json.loads((tiny_demo / "gt_train.json").read_text())
    document["images"] = [im for im in document["images"] if im["id"] != document["annotations"][0]["image_id"]]
    path = tmp_path / "orphan.json"
    path.write_text(json.dumps(document))
    out = tmp_path / "coco"
    result = liid("data", "coco", "--annotations", path, "--images", tiny_demo / "images", "--out", out, "-q")
    assert_one_line_error(result, "orphan.json", f"annotation {document['annotations'][0]['id']} ",
                          "not in `images`")
    assert not out.exists()


def test_coco_size_that_is_not_the_photo_s_is_one_line_error(tiny_demo: Path, tmp_path: Path) -> None:
    document = json.loads((tiny_demo / "gt_train.json").read_text())
    image = document["images"][3]
    recorded = (image["width"] * 2, image["height"] * 2)
    image["width"], image["height"] = recorded
    path = tmp_path / "doubled.json"
    path.write_text(json.dumps(document))
    out = tmp_path / "coco"
    result = liid("data", "coco", "--annotations", path, "--images", tiny_demo / "images", "--out", out, "-q")
    assert_one_line_error(result, image["file_name"], "doubled.json",
                          f"{recorded[0]}x{recorded[1]}", f"{recorded[0] // 2}x{recorded[1] // 2}")
    assert not out.exists()


def test_coco_degenerate_polygons_are_dropped_with_one_warning(
    tiny_demo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pycocotools.coco import COCO

    monkeypatch.setattr(logging.getLogger("liid"), "propagate", True)

    document = json.loads((tiny_demo / "gt_train.json").read_text())
    polygon = [[2.0, 2.0, 20.0, 2.0, 20.0, 20.0]]
    extra = [
        [[1.0, 1.0, 5.0, 5.0]],  # two points: no valid polygon left, skipped
        [[1.0, 1.0, 5.0, 5.0], *polygon],  # one polygon dropped, one kept
        [],  # empty segmentation: skipped
    ]
    image = document["images"][0]
    category = document["categories"][0]["id"]
    for number, segmentation in enumerate(extra, start=10_000):
        document["annotations"].append({
            "id": number, "image_id": image["id"], "category_id": category, "iscrowd": 0,
            "segmentation": segmentation, "bbox": [1.0, 1.0, 19.0, 19.0], "area": 100.0,
        })
    path = tmp_path / "degenerate.json"
    path.write_text(json.dumps(document))
    out = tmp_path / "coco"
    result = liid("data", "coco", "--annotations", path, "--images", tiny_demo / "images", "--out", out)
    assert result.exit_code == 0, result.output
    warnings = sorted({r.getMessage() for r in caplog.records if "fewer than 3 points" in r.getMessage()})
    assert len(warnings) == 1 and "dropped 2 polygon(s)" in warnings[0]
    assert "2 annotation(s) left with no valid mask" in warnings[0] and "10000, 10002" in warnings[0]
    truth = COCO(str(out / "gt_train.json"))
    kept = {a["id"]: a for a in truth.dataset["annotations"]}
    assert 10_000 not in kept and 10_002 not in kept and kept[10_001]["segmentation"] == polygon
    for annotation in truth.dataset["annotations"]:
        assert truth.annToMask(annotation).any()


def test_images_sharing_a_stem_get_their_own_outputs(tiny_demo: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    sources = sorted((tiny_demo / "images").glob("train_*.png"))[:4]
    names = ["a/img_0.png", "b/img_0.png", "x.png", "x.jpg"]
    for source, name in zip(sources, names, strict=True):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.open(source).convert("RGB").save(photos / name)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\n" + "".join(f"{name},ring;star\n" for name in names))
    out, run = tmp_path / "data", tmp_path / "run"
    assert liid("data", "folder", "--images", photos, "--labels", labels, "--out", out, "-q").exit_code == 0
    index = load_index(out / "index_train.json")
    assert sorted(im["name"] for im in index.images) == ["a__img_0", "b__img_0", "x.jpg", "x.png"]
    common = ["--run", run, "--profile", "demo", "-q"]
    assert liid("proposals", "--data", out / "index_train.json", *common).exit_code == 0
    result = liid("train-cam", *common, "--set", "epochs=1")
    assert result.exit_code == 0, result.output
    cams = sorted(p.name for p in (run / "cam" / "cams").glob("*.png"))
    assert len(cams) == 8 and "x.jpg_ring.png" in cams and "a__img_0_star.png" in cams
    (photos / "a__img_0.png").write_bytes((photos / "a" / "img_0.png").read_bytes())
    labels.write_text("image,labels\na/img_0.png,ring\na__img_0.png,ring\n")
    result = liid("data", "folder", "--images", photos, "--labels", labels, "--out", tmp_path / "bad", "-q")
    assert_one_line_error(result, "labels.csv", "'a/img_0.png'", "'a__img_0.png'", "rename one")
    assert not (tmp_path / "bad").exists()
