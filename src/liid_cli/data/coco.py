"""COCO reader: image labels from an instances file; its annotations kept as ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liid_cli.errors import LiidError
from liid_cli.fileio import read_json


def read_coco(annotations_path: Path, images_dir: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """(index images, categories, ground-truth annotations) from a COCO instances json.

    Crowd regions mark their class as present in the image's labels but give no box; they stay in
    the ground truth with iscrowd=1, which COCOeval ignores.
    """
    if not images_dir.is_dir():
        raise LiidError(f"{images_dir}: image folder not found; pass --images DIR holding the COCO images")
    document: dict[str, Any] = read_json(annotations_path)
    for key in ("images", "categories", "annotations"):
        if key not in document:
            raise LiidError(f"{annotations_path}: no {key!r} list; is this a COCO instances file?")
    categories = [{"id": int(c["id"]), "name": c["name"], "supercategory": c.get("supercategory", "")}
                  for c in document["categories"]]
    known = {c["id"] for c in categories}
    image_ids = {image["id"] for image in document["images"]}
    by_image: dict[int, list[dict]] = {}
    for ann in document["annotations"]:
        if ann["category_id"] not in known:
            raise LiidError(
                f"{annotations_path}: annotation {ann.get('id')} has category_id {ann['category_id']} "
                "missing from `categories`; add the category or drop the annotation"
            )
        if ann["image_id"] not in image_ids:
            raise LiidError(
                f"{annotations_path}: annotation {ann.get('id')} has image_id {ann['image_id']}, "
                "which is not in `images`; add the image or drop the annotation"
            )
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = []
    for number, image in enumerate(document["images"], start=1):
        anns = by_image.get(image["id"], [])
        images.append({
            "id": int(image["id"]), "name": Path(image["file_name"]).stem,
            "file_name": image["file_name"], "width": int(image["width"]), "height": int(image["height"]),
            "labels": sorted({a["category_id"] for a in anns}),
            "boxes": [{"bbox": [float(v) for v in a["bbox"]], "category_id": a["category_id"]}
                      for a in anns if not a.get("iscrowd", 0)],
        })
    missing = [im["file_name"] for im in images[:50] if not (images_dir / im["file_name"]).is_file()]
    if missing:
        raise LiidError(f"{images_dir / missing[0]}: image listed in {annotations_path} is missing; "
                        "check --images")
    annotations = [a for a in document["annotations"] if "segmentation" in a]
    return images, categories, annotations
