"""The data set index: a COCO-style JSON with each image's image-level labels.

```
{"info": {"schema": "liid.index/1", "name": ..., "split": ..., "image_root": "images",
          "ground_truth": "gt_train.json" | null},
 "categories": [{"id": 1, "name": "circle"}, ...],          # COCO category ids, any integers
 "images": [{"id": 1, "name": "train_0000", "file_name": "train_0000.png",
             "width": 160, "height": 160, "labels": [1, 3],  # category ids present
             "boxes": [{"bbox": [x, y, w, h], "category_id": 3}]}]}   # optional, box mode
```
Ground-truth instance masks live in a separate COCO instances file used only by evaluation.
Internally classes are 0-based with 0 = background: `ClassMap` is the one place that converts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json, write_json


@dataclass(frozen=True)
class ClassMap:
    """COCO category ids <-> internal ids (1..K by order of `categories`; 0 = background)."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background excluded)."""
        return len(self.category_ids)

    def to_internal(self, category_id: int) -> int:
        return self.category_ids.index(category_id) + 1

    def to_category(self, internal_id: int) -> int:
        if internal_id < 1:
            raise ValueError("class 0 is background and has no COCO category")
        return self.category_ids[internal_id - 1]

    def label_vector(self, category_ids: list[int]) -> np.ndarray:
        """(K+1,) float32 with 1 for background and for each labelled class."""
        vector = np.zeros(self.num_classes + 1, dtype=np.float32)
        vector[0] = 1.0
        for category_id in category_ids:
            vector[self.to_internal(category_id)] = 1.0
        return vector


@dataclass(frozen=True)
class DatasetIndex:
    path: Path
    data: dict[str, Any]

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.data["images"]

    @property
    def categories(self) -> list[dict[str, Any]]:
        return self.data["categories"]

    @property
    def info(self) -> dict[str, Any]:
        return self.data["info"]

    @property
    def classes(self) -> ClassMap:
        return ClassMap(
            tuple(int(c["id"]) for c in self.categories), tuple(str(c["name"]) for c in self.categories)
        )

    @property
    def image_root(self) -> Path:
        root = Path(self.info.get("image_root", "."))
        return root if root.is_absolute() else self.path.parent / root

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.image_root / image["file_name"]

    @property
    def ground_truth_path(self) -> Path | None:
        name = self.info.get("ground_truth")
        if not name:
            return None
        path = Path(name)
        return path if path.is_absolute() else self.path.parent / path

    def labels(self, image: dict[str, Any]) -> list[int]:
        """Internal ids (1..K) of the image's labelled classes."""
        classes = self.classes
        return sorted(classes.to_internal(c) for c in image["labels"])

    def tagged_classes(self, image: dict[str, Any]) -> list[int]:
        """The image's labelled classes, 0-based (the columns of `tag_vector`)."""
        return [k - 1 for k in self.labels(image)]

    def tag_vector(self, image: dict[str, Any]) -> np.ndarray:
        """(K,) float32 multi-hot of the image's labelled classes (no background entry)."""
        return self.classes.label_vector(image["labels"])[1:]


def load_index(path: Path) -> DatasetIndex:
    """Read and check an index; a problem is a one-line error naming the file."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("info", {}).get("schema") != artifacts.SCHEMA_INDEX:
        raise LiidError(f"{path}: not a liid data set index ({artifacts.SCHEMA_INDEX}); make one with `liid data ...`")
    validate_index(data, path)
    return DatasetIndex(path, data)


def validate_index(data: dict[str, Any], path: Path) -> None:
    categories = data.get("categories") or []
    if not categories:
        raise LiidError(f"{path}: the label set is empty (no categories); a data set needs at least one class")
    known = {int(c["id"]) for c in categories}
    if len(known) != len(categories):
        raise LiidError(f"{path}: duplicate category ids; give each class one id")
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for image in data.get("images", []):
        if image["id"] in seen_ids:
            raise LiidError(f"{path}: image id {image['id']} appears twice; ids must be unique")
        if image["name"] in seen_names:
            raise LiidError(f"{path}: image name {image['name']!r} appears twice; every image's "
                            "outputs are named after it, so names must be unique (remake the index)")
        seen_ids.add(image["id"])
        seen_names.add(image["name"])
        for category_id in image.get("labels", []):
            if category_id not in known:
                raise LiidError(
                    f"{path}: image {image['name']!r} is labelled with category {category_id}, "
                    "which is not in `categories`; add the category or fix the label"
                )


def image_keys(file_names: list[str], source: str) -> list[str]:
    """The key of each image file, unique within the data set: every per-image artifact (CAM and
    semantic PNGs, overlays, predictions) is named after it. The path relative to the image
    folder without its suffix, sub-folders joined by `__` (`a/img_0.png` -> `a__img_0`); where two
    files would share one (`x.jpg` beside `x.png`) both keep their suffix (`x.jpg`, `x.png`). Two
    files left with one key are an error naming both (`source` says where they are listed)."""
    stems = [str(Path(name).with_suffix("")).replace("/", "__") for name in file_names]
    shared = {stem for stem, count in Counter(stems).items() if count > 1}
    keys = [
        name.replace("/", "__") if stem in shared else stem
        for name, stem in zip(file_names, stems, strict=True)
    ]
    first: dict[str, str] = {}
    for name, key in zip(file_names, keys, strict=True):
        if key in first:
            raise LiidError(f"{source}: images {first[key]!r} and {name!r} both get the key {key!r}, "
                            "which names their outputs; rename one of the files")
        first[key] = name
    return keys


def parse_part(text: str, option: str) -> tuple[int, int]:
    """`i/n` with 0 <= i < n, as `--shard` and `--part` take it."""
    try:
        part, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise LiidError(f"{option} {text!r}: expected i/n, e.g. {option} 0/2") from None
    if not 0 <= part < count:
        raise LiidError(f"{option} {text!r}: need 0 <= i < n")
    return part, count


def take_part(images: list[dict[str, Any]], part: tuple[int, int]) -> list[dict[str, Any]]:
    """Part i of n of a data set: the images at ranks i, i + n, i + 2n, ... by image id, so that the
    parts are fixed, disjoint, cover the set and differ in size by at most one image."""
    index, count = part
    return sorted(images, key=lambda image: image["id"])[index::count]


def write_index(
    path: Path, *, name: str, split: str, categories: list[dict[str, Any]],
    images: list[dict[str, Any]], image_root: str, ground_truth: str | None,
) -> None:
    data = {
        "info": {"schema": artifacts.SCHEMA_INDEX, "name": name, "split": split,
                 "image_root": image_root, "ground_truth": ground_truth},
        "categories": categories,
        "images": images,
    }
    validate_index(data, path)
    write_json(path, data, indent=None)


def coco_ground_truth(
    images: list[dict[str, Any]], categories: list[dict[str, Any]], annotations: list[dict[str, Any]]
) -> dict[str, Any]:
    """A COCO instances document for the ground truth of `images`."""
    return {
        "info": {"description": "liid ground truth"},
        "images": [
            {"id": im["id"], "file_name": im["file_name"], "width": im["width"], "height": im["height"]}
            for im in images
        ],
        "categories": [{"id": c["id"], "name": c["name"], "supercategory": c.get("supercategory", "")}
                       for c in categories],
        "annotations": annotations,
    }
