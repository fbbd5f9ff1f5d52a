"""A data set index of a plain folder of images: `liid predict --images DIR` runs like a split."""

from __future__ import annotations

from pathlib import Path

from liid_cli.checkpoints import load_checkpoint
from liid_cli.data.images import image_size
from liid_cli.data.index import image_keys, write_index
from liid_cli.errors import LiidError
from liid_cli.log import track

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def write_folder_index(images_dir: Path, model_path: Path, out: Path) -> Path:
    """Index every image under `images_dir` (no labels) with the classes of `model_path`."""
    if not images_dir.is_dir():
        raise LiidError(f"{images_dir}: image folder not found; pass --images DIR")
    files = sorted(
        p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise LiidError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    checkpoint = load_checkpoint(model_path)
    if "category_ids" not in checkpoint:
        raise LiidError(
            f"{model_path}: not a model written by `liid train` (model_best.pt / model_last.pt)"
        )
    categories = [
        {"id": int(c), "name": str(n), "supercategory": ""}
        for c, n in zip(checkpoint["category_ids"], checkpoint["class_names"])
    ]
    images = []
    relative_names = [str(path.relative_to(images_dir)) for path in files]
    keys = image_keys(relative_names, str(images_dir))
    for number, path in enumerate(track(files, "indexing images"), start=1):
        width, height = image_size(path)
        relative = path.relative_to(images_dir)
        images.append(
            {
                "id": number,
                "name": keys[number - 1],
                "file_name": str(relative),
                "width": width,
                "height": height,
                "labels": [],
                "boxes": [],
            }
        )
    write_index(
        out,
        name="folder",
        split=images_dir.name,
        categories=categories,
        images=images,
        image_root=str(images_dir.resolve()),
        ground_truth=None,
    )
    return out
