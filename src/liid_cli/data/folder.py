"""A folder of images with tags in a CSV (`image,labels` with `;`-separated names) or a JSON map."""

from __future__ import annotations

import csv
from pathlib import Path

from liid_cli.data.images import image_size
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json
from liid_cli.log import track


def read_tags(labels_path: Path) -> dict[str, list[str]]:
    """File name -> class names, from `labels.csv` or `labels.json`."""
    if not labels_path.is_file():
        raise LiidError(f"{labels_path}: label file not found; pass --labels labels.csv or labels.json")
    if labels_path.suffix.lower() == ".json":
        data = read_json(labels_path)
        if not isinstance(data, dict):
            raise LiidError(f"{labels_path}: expected a JSON object mapping file name -> list of tags")
        return {str(k): [str(t) for t in v] for k, v in data.items()}
    tags: dict[str, list[str]] = {}
    with labels_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"image", "labels"} <= set(reader.fieldnames):
            raise LiidError(f"{labels_path}: expected a CSV header `image,labels` (labels separated by ';')")
        for row in reader:
            tags[row["image"]] = [t.strip() for t in (row["labels"] or "").split(";") if t.strip()]
    return tags


def read_folder(images_dir: Path, labels_path: Path) -> tuple[list[dict], list[dict]]:
    """(index images, categories); classes are numbered 1..K in sorted name order."""
    if not images_dir.is_dir():
        raise LiidError(f"{images_dir}: image folder not found; pass --images DIR")
    tags = read_tags(labels_path)
    names = sorted({t for image_tags in tags.values() for t in image_tags})
    if not names:
        raise LiidError(f"{labels_path}: the label set is empty; tag each image with at least one class")
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(names)]
    ids = {c["name"]: c["id"] for c in categories}
    images = []
    for number, (file_name, image_tags) in enumerate(track(sorted(tags.items()), "reading images"), start=1):
        path = images_dir / file_name
        if not path.is_file():
            raise LiidError(f"{labels_path}: names image {file_name!r}, which is not in {images_dir}; "
                            "fix the row or add the image")
        width, height = image_size(path)
        images.append({"id": number, "name": Path(file_name).stem, "file_name": file_name,
                       "width": width, "height": height, "labels": sorted({ids[t] for t in image_tags}),
                       "boxes": []})
    return images, categories
