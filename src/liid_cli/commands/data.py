"""Commands: `liid data demo|voc|coco|folder`, each writing a data set index (and ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from liid_cli import artifacts
from liid_cli.commands.common import QuietOption
from liid_cli.data.index import coco_ground_truth, parse_part, take_part, write_index
from liid_cli.errors import user_errors
from liid_cli.fileio import write_json
from liid_cli.log import console, log, setup_logging

data_app = typer.Typer(
    help="Make a data set index (index_<split>.json, plus gt_<split>.json when masks exist).",
    no_args_is_help=True,
)
OutOption = Annotated[Path, typer.Option("--out", help="Folder to write the index (and ground truth) into.")]
PartOption = Annotated[str | None, typer.Option(
    "--part", help="Keep part i of n: the images at ranks i, i+n, ... by image id (e.g. two fixed "
                   "halves, 0/2 and 1/2, one to choose settings on and one to report).")]


def _write(out: Path, name: str, split: str, images: list[dict], categories: list[dict],
           annotations: list[dict] | None, image_root: Path) -> None:
    gt_name = None
    if annotations is not None:
        gt_name = artifacts.GT_FILE.format(split=split)
        write_json(out / gt_name, coco_ground_truth(images, categories, annotations), indent=None)
    write_index(artifacts.index_path(out, split), name=name, split=split, categories=categories,
                images=images, image_root=str(image_root.resolve()), ground_truth=gt_name)
    n_labelled = sum(bool(im["labels"]) for im in images)
    console.print(f"{artifacts.index_path(out, split)}: {len(images)} images ({n_labelled} with labels), "
                  f"{len(categories)} classes" + (f", {len(annotations)} ground-truth instances"
                                                  if annotations is not None else ""))


@data_app.command("demo")
@user_errors
def demo(
    out: OutOption = Path("data/demo"),
    n_train: Annotated[int, typer.Option("--n-train", min=1, help="Training images.")] = 300,
    n_val: Annotated[int, typer.Option("--n-val", min=1, help="Validation images.")] = 100,
    size: Annotated[int, typer.Option("--size", min=48, help="Typical image side in pixels.")] = 160,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    quiet: QuietOption = False,
) -> None:
    """Generate the embedded demo set: 6 shape classes on textured clutter, train + val splits."""
    from liid_cli.data.demo import DemoSpec, generate

    setup_logging(quiet)
    spec = DemoSpec(n_train=n_train, n_val=n_val, size=size, seed=seed)
    counts = generate(out, spec)
    log.info(f"demo data set in {out}: {counts}")


@data_app.command("voc")
@user_errors
def voc(
    root: Annotated[Path, typer.Option("--root", help="VOCdevkit/VOC2012 (JPEGImages, Annotations, ...).")],
    split: Annotated[str, typer.Option("--split", help="Split name: ImageSets/Segmentation/<split>.txt.")] = "train",
    split_file: Annotated[Path | None, typer.Option("--split-file", help="Custom list of image ids.")] = None,
    out: OutOption = Path("data/voc"),
    quiet: QuietOption = False,
) -> None:
    """PASCAL VOC: labels from Annotations XML, ground truth from SegmentationObject/Class PNGs."""
    from liid_cli.data.voc import VOC_CATEGORIES, read_voc

    setup_logging(quiet)
    images, annotations, has_gt = read_voc(root, split, split_file)
    _write(out, "voc", split, images, VOC_CATEGORIES, annotations if has_gt else None, root / "JPEGImages")


@data_app.command("coco")
@user_errors
def coco(
    annotations: Annotated[Path, typer.Option("--annotations", help="COCO instances json.")],
    images: Annotated[Path, typer.Option("--images", help="Folder holding the images.")],
    split: Annotated[str, typer.Option("--split", help="Name of the split written.")] = "train",
    out: OutOption = Path("data/coco"),
    part: PartOption = None,
    quiet: QuietOption = False,
) -> None:
    """COCO: labels from the instance annotations (crowd regions kept as ignore), ground truth kept."""
    from liid_cli.data.coco import read_coco

    setup_logging(quiet)
    kept_part = parse_part(part, "--part") if part is not None else None
    records, categories, gt = read_coco(annotations, images)
    if kept_part is not None:
        records = take_part(records, kept_part)
        kept = {image["id"] for image in records}
        gt = [a for a in gt if a["image_id"] in kept]
    _write(out, "coco", split, records, categories, gt, images)


@data_app.command("folder")
@user_errors
def folder(
    images: Annotated[Path, typer.Option("--images", help="Folder of images (any file names).")],
    labels: Annotated[Path, typer.Option("--labels", help="labels.csv (image,labels with ';') or labels.json.")],
    classes: Annotated[str | None, typer.Option(
        "--classes", help="The classes, in id order: a,b,c or a file with one name a line; every tag "
                          "must be one of them (default: the tags found, sorted).")] = None,
    split: Annotated[str, typer.Option("--split", help="Name of the split written.")] = "train",
    out: OutOption = Path("data/folder"),
    part: PartOption = None,
    quiet: QuietOption = False,
) -> None:
    """Any folder of images with image-level tags; no ground truth. Lists the classes it found."""
    from liid_cli.data.folder import (
        class_counts,
        class_lines,
        likely_typos,
        parse_class_list,
        read_folder,
    )

    setup_logging(quiet)
    class_list = parse_class_list(classes) if classes is not None else None
    kept_part = parse_part(part, "--part") if part is not None else None
    records, categories = read_folder(images, labels, class_list)
    if kept_part is not None:
        records = take_part(records, kept_part)
    _write(out, "folder", split, records, categories, None, images)
    counts = class_counts(records, categories)
    if not quiet:
        for line in class_lines(counts):
            console.print(line, highlight=False, markup=False)
    if class_list is None:
        for warning in likely_typos(counts):
            log.warning(warning)
