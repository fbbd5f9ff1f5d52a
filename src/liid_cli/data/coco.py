"""COCO reader: image labels from an instances file; its annotations kept as ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liid_cli.data.images import displayed_size
from liid_cli.data.index import image_keys
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json
from liid_cli.log import log, track

MIN_POLYGON_COORDS = 6  # x, y of 3 points


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
    keys = image_keys([image["file_name"] for image in document["images"]], str(annotations_path))
    for image, key in zip(document["images"], keys, strict=True):
        anns = by_image.get(image["id"], [])
        images.append({
            "id": int(image["id"]), "name": key,
            "file_name": image["file_name"], "width": int(image["width"]), "height": int(image["height"]),
            "labels": sorted({a["category_id"] for a in anns}),
            "boxes": [{"bbox": [float(v) for v in a["bbox"]], "category_id": a["category_id"]}
                      for a in anns if not a.get("iscrowd", 0)],
        })
    missing = [im["file_name"] for im in images[:50] if not (images_dir / im["file_name"]).is_file()]
    if missing:
        raise LiidError(f"{images_dir / missing[0]}: image listed in {annotations_path} is missing; "
                        "check --images")
    for image in track(images, "checking image sizes"):
        _check_size(image, images_dir / image["file_name"], annotations_path)
    annotations = _valid_masks([a for a in document["annotations"] if "segmentation" in a],
                               annotations_path)
    return images, categories, annotations


def _check_size(image: dict[str, Any], path: Path, annotations_path: Path) -> None:
    """The size the annotations were drawn at must be the photo's as displayed."""
    recorded = (image["width"], image["height"])
    actual = displayed_size(path)
    if recorded != actual:
        raise LiidError(
            f"{path}: {annotations_path} records {recorded[0]}x{recorded[1]} for this image but the "
            f"file is {actual[0]}x{actual[1]} as displayed; use the annotations made for these files"
        )


def _valid_masks(annotations: list[dict], annotations_path: Path) -> list[dict]:
    """Annotations with their degenerate polygons (under 3 points) dropped; one left with no
    valid polygon (or an empty segmentation) is skipped. One warning counts both."""
    kept, dropped_polygons, skipped = [], 0, []
    for annotation in annotations:
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):
            polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= MIN_POLYGON_COORDS]
            dropped_polygons += len(segmentation) - len(polygons)
            if not polygons:
                skipped.append(annotation.get("id"))
                continue
            annotation = dict(annotation, segmentation=polygons)
        elif not segmentation:
            skipped.append(annotation.get("id"))
            continue
        kept.append(annotation)
    if dropped_polygons or skipped:
        shown = ", ".join(str(i) for i in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        log.warning(
            f"{annotations_path}: dropped {dropped_polygons} polygon(s) with fewer than 3 points; "
            f"{len(skipped)} annotation(s) left with no valid mask skipped"
            + (f" (ids {shown})" if skipped else "")
        )
    return kept
