"""A folder of images with tags in a CSV (`image,labels` with `;`-separated names) or a JSON map.

Without a class list the classes are the tags found, numbered 1..K in sorted name order; with one
(`--classes a,b,c` or a file with one name a line) they are exactly the listed classes in list
order, and a tag outside the list is an error that suggests the closest listed class.
"""

from __future__ import annotations

import csv
import difflib
import json
from pathlib import Path
from typing import Any

from liid_cli.data.images import image_size
from liid_cli.data.index import image_keys
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json
from liid_cli.log import track

TYPO_SIMILARITY = 0.8  # difflib ratio above which a rarer class looks like a typo of another


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, so that a repeated key can be reported."""


def read_tags(labels_path: Path) -> dict[str, list[str]]:
    """File name -> class names, from `labels.csv` or `labels.json`."""
    if not labels_path.is_file():
        raise LiidError(f"{labels_path}: label file not found; pass --labels labels.csv or labels.json")
    if labels_path.suffix.lower() == ".json":
        return _json_tags(labels_path)
    try:
        return _csv_tags(labels_path)
    except UnicodeDecodeError as error:
        raise LiidError(f"{labels_path}: not UTF-8 text ({error.reason} at byte {error.start}); "
                        "save the file as UTF-8") from None
    except csv.Error as error:
        raise LiidError(f"{labels_path}: not a valid CSV ({error}); fix the file") from None


def _json_tags(path: Path) -> dict[str, list[str]]:
    data = read_json(path, object_pairs_hook=_Pairs)
    if not isinstance(data, _Pairs):
        raise LiidError(f"{path}: expected a JSON object mapping file name -> list of tags")
    tags: dict[str, list[str]] = {}
    for name, value in data:
        if name in tags:
            raise LiidError(f"{path}: image {name!r} is listed twice; merge its tags into one entry")
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            example = json.dumps(value.split(";") if isinstance(value, str) else ["cat", "dog"])
            raise LiidError(f"{path}: the tags of image {name!r} must be a list of class names, "
                            f"e.g. {example}, not {_json_kind(value)}")
        tags[name] = _clean(value)
    return tags


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "an object" if isinstance(value, _Pairs) else "a list holding non-text items"


def _csv_tags(path: Path) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        if reader.fieldnames is None or not {"image", "labels"} <= set(reader.fieldnames):
            raise LiidError(f"{path}: expected a CSV header `image,labels` (labels separated by ';')")
        for row in reader:
            name = (row["image"] or "").strip()
            if not name:
                raise LiidError(f"{path}: line {reader.line_num} has no image name; fill it in or delete the line")
            if name in lines:
                raise LiidError(f"{path}: image {name!r} is on line {lines[name]} and line {reader.line_num}; "
                                "merge its tags into one row (separated by ';')")
            lines[name] = reader.line_num
            tags[name] = _clean((row["labels"] or "").split(";"))
    return tags


def _clean(tags: list[str]) -> list[str]:
    return [tag.strip() for tag in tags if tag.strip()]


def parse_class_list(value: str) -> list[str]:
    """`--classes`: names separated by commas, or a text file with one class name a line."""
    path = Path(value)
    if path.is_file():
        try:
            names = _clean(path.read_text(encoding="utf-8-sig").splitlines())
        except UnicodeDecodeError:
            raise LiidError(f"{path}: not UTF-8 text; save the class list as UTF-8, one name a line") from None
        where = str(path)
    else:
        names = _clean(value.split(","))
        where = f"--classes {value!r}"
    if not names:
        raise LiidError(f"{where}: no class names; pass --classes a,b,c or a file with one name a line")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise LiidError(f"{where}: class {repeated[0]!r} is listed twice; list each class once")
    return names


def read_folder(
    images_dir: Path, labels_path: Path, classes: list[str] | None = None
) -> tuple[list[dict], list[dict]]:
    """(index images, categories); every tag must be one of `classes` when that is given."""
    if not images_dir.is_dir():
        raise LiidError(f"{images_dir}: image folder not found; pass --images DIR")
    tags = read_tags(labels_path)
    found = sorted({t for image_tags in tags.values() for t in image_tags})
    if not found:
        raise LiidError(f"{labels_path}: the label set is empty; tag each image with at least one class")
    if classes is not None:
        _check_tags(tags, classes, labels_path)
    names = found if classes is None else classes
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(names)]
    ids = {c["name"]: c["id"] for c in categories}
    images = []
    keys = image_keys(sorted(tags), str(labels_path))
    for number, (file_name, image_tags) in enumerate(track(sorted(tags.items()), "reading images"), start=1):
        path = images_dir / file_name
        if not path.is_file():
            raise LiidError(f"{labels_path}: names image {file_name!r}, which is not in {images_dir}; "
                            "fix the row or add the image")
        width, height = image_size(path)
        images.append({"id": number, "name": keys[number - 1], "file_name": file_name,
                       "width": width, "height": height, "labels": sorted({ids[t] for t in image_tags}),
                       "boxes": []})
    return images, categories


def _check_tags(tags: dict[str, list[str]], classes: list[str], labels_path: Path) -> None:
    known = set(classes)
    for file_name, image_tags in sorted(tags.items()):
        for tag in image_tags:
            if tag not in known:
                close = difflib.get_close_matches(tag, classes, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise LiidError(f"{labels_path}: image {file_name!r} has tag {tag!r}, which is not in the "
                                f"class list{hint}; fix the tag or add the class to --classes")


def class_counts(images: list[dict], categories: list[dict]) -> dict[str, int]:
    """Class name -> number of images labelled with it, in category order."""
    counts = {c["id"]: 0 for c in categories}
    for image in images:
        for category_id in image["labels"]:
            counts[category_id] += 1
    return {c["name"]: counts[c["id"]] for c in categories}


def class_lines(counts: dict[str, int]) -> list[str]:
    """One aligned line per class: its name and how many images carry it."""
    width = max(len(name) for name in counts)
    return [f"  {name:<{width}}  {_images(count)}" for name, count in counts.items()]


def likely_typos(counts: dict[str, int]) -> list[str]:
    """A warning for each class that looks like a misspelling of a class with more images."""
    warnings = []
    for name, count in counts.items():
        more = [other for other, n in counts.items() if n > count]
        close = difflib.get_close_matches(name, more, n=1, cutoff=TYPO_SIMILARITY)
        if close:
            warnings.append(f"class {name!r} ({_images(count)}) looks like a typo of {close[0]!r} "
                            f"({_images(counts[close[0]])}); fix the tag, or pass --classes to check every tag")
    return warnings


def _images(count: int) -> str:
    return f"{count} image" + ("" if count == 1 else "s")
