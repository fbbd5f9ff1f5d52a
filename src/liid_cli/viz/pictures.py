"""What `liid viz` draws for a run: one grid per data set split, with a column per available source.

Columns (those that exist): the image, its ground truth, the exported pseudo labels, the predictions
of a trained model (and, on the validation photos of `make real-train VAL_...`, those of each model
under `<run>/val/`), then the palette maps (semantic pseudo labels, semantic predictions). Whatever
stage is missing is left out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from liid_cli import artifacts, masks, registry
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.evaluation.box_masks import method_runs
from liid_cli.fileio import read_json
from liid_cli.log import track
from liid_cli.palette import read_label_png
from liid_cli.runner import index_from_upstream
from liid_cli.viz.overlays import Instance, draw_instances, grid, render_label_map


@dataclass(frozen=True)
class DrawSettings:
    max_images: int
    cell: int
    alpha: float
    min_score: float
    max_instances: int
    seed: int


@dataclass
class Panel:
    """One grid: the images of one data set index and the sources drawn for them."""

    index: DatasetIndex
    instance_columns: dict[str, Path] = field(default_factory=dict)  # title -> COCO json
    semantic_columns: dict[str, Path] = field(default_factory=dict)  # title -> PNG folder
    score_filtered: set[str] = field(default_factory=set)  # columns drawn from min_score up

    @property
    def title(self) -> str:
        info = self.index.info
        return f"{info.get('name', 'data')} / {info.get('split', self.index.path.stem)}"


def find_panels(run_dir: Path, data: Path | None) -> list[Panel]:
    """The grids a run can show; `data` adds (or is the only) index when given."""
    panels: dict[tuple[Any, ...], Panel] = {}

    def panel(path: Path) -> Panel:
        # By the photos and their ids, not the file: each `predict --images DIR` run writes its own
        # index of the same folder, and their predictions belong in one grid.
        index = load_index(path)
        key = (index.image_root.resolve(), *((im["id"], im["file_name"]) for im in index.images))
        if key not in panels:
            panels[key] = Panel(index)
        return panels[key]

    export_dir = artifacts.stage_dir(run_dir, "export-coco")
    export_index = index_from_upstream(run_dir, ("export-coco",))
    if export_index is not None:
        panel(export_index).instance_columns["pseudo labels"] = (
            export_dir / artifacts.PSEUDO_INSTANCES_JSON
        )
        panel(export_index).semantic_columns["semantic pseudo labels"] = (
            export_dir / artifacts.SEMANTIC_DIR
        )
    predictions = artifacts.stage_dir(run_dir, "predict") / artifacts.PREDICTIONS_JSON
    predict_index = index_from_upstream(run_dir, ("predict",))
    if predict_index is not None and predictions.is_file():
        panel(predict_index).instance_columns["predictions"] = predictions
        panel(predict_index).score_filtered.add("predictions")
    for model, folder in artifacts.val_runs(run_dir).items():
        val_index = index_from_upstream(folder, ("predict",))
        column = f"{model} predictions"
        if val_index is not None:
            panel(val_index).instance_columns[column] = (
                artifacts.stage_dir(folder, "predict") / artifacts.PREDICTIONS_JSON
            )
            panel(val_index).score_filtered.add(column)
    semantic_predictions = artifacts.stage_dir(run_dir, "predict-semantic") / artifacts.SEMANTIC_DIR
    semantic_index = index_from_upstream(run_dir, ("predict-semantic",))
    if semantic_index is not None:
        panel(semantic_index).semantic_columns["semantic predictions"] = semantic_predictions
    for method, run in method_runs(run_dir).items():
        pseudo = run.folder / artifacts.PSEUDO_INSTANCES_JSON
        panel(run.index_path).instance_columns[method] = pseudo
    if data is not None:
        panel(data)
    if not panels:
        for stage in registry.names():
            recorded = index_from_upstream(run_dir, (stage,))
            if recorded is not None and recorded.is_file():
                panel(recorded)
                break
    return list(panels.values())


def load_instances(
    path: Path, index: DatasetIndex, max_instances: int, *, min_score: float, scored: bool
) -> dict[int, list[Instance]]:
    """Per image id, the instances of a COCO instances json or results list, best score first."""
    document: Any = read_json(path)
    annotations = document["annotations"] if isinstance(document, dict) else document
    classes = index.classes
    images = {int(im["id"]): im for im in index.images}
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in annotations:
        if not ann.get("iscrowd", 0) and float(ann.get("score", 1.0)) >= min_score:
            by_image[int(ann["image_id"])].append(ann)
    result = {}
    for image_id, anns in by_image.items():
        anns.sort(key=lambda a: -float(a.get("score", 1.0)))
        instances = []
        for ann in anns[:max_instances]:
            label = classes.to_internal(int(ann["category_id"]))
            caption = classes.names[label - 1] + (
                f" {float(ann['score']):.2f}" if scored and "score" in ann else ""
            )
            segmentation = ann["segmentation"]
            if not isinstance(segmentation, dict) or isinstance(segmentation.get("counts"), list):
                image = images[image_id]
                segmentation = masks.segmentation_rle(
                    segmentation, int(image["height"]), int(image["width"])
                )
            instances.append(Instance(segmentation, label, caption))
        result[image_id] = instances
    return result


def sample_images(index: DatasetIndex, settings: DrawSettings) -> list[dict[str, Any]]:
    images = index.images
    if len(images) <= settings.max_images:
        return list(images)
    chosen = np.random.default_rng(settings.seed).choice(
        len(images), settings.max_images, replace=False
    )
    return [images[i] for i in sorted(chosen)]


def draw_panel(panel: Panel, settings: DrawSettings) -> Image.Image:
    """The grid of one panel: rows = sampled images, columns = image, ground truth, sources."""
    columns: dict[str, dict[int, list[Instance]]] = {}
    gt_path = panel.index.ground_truth_path
    if gt_path is not None and gt_path.is_file():
        columns["ground truth"] = load_instances(
            gt_path, panel.index, settings.max_instances, min_score=0.0, scored=False
        )
    for title, path in panel.instance_columns.items():
        min_score = settings.min_score if title in panel.score_filtered else 0.0
        columns[title] = load_instances(
            path, panel.index, settings.max_instances, min_score=min_score, scored=True
        )
    semantic = {
        title: folder for title, folder in panel.semantic_columns.items() if folder.is_dir()
    }
    titles = ["image", *columns, *semantic]
    rows = []
    images = sample_images(panel.index, settings)
    for image in track(images, f"viz {panel.title}"):
        pixels = read_rgb(panel.index.image_path(image))
        cells: list[Image.Image | None] = [draw_instances(pixels, [], settings.cell)]
        for by_image in columns.values():
            cells.append(
                draw_instances(
                    pixels, by_image.get(int(image["id"]), []), settings.cell, settings.alpha
                )
            )
        for folder in semantic.values():
            png = folder / f"{image['name']}.png"
            cells.append(
                render_label_map(read_label_png(png), settings.cell) if png.is_file() else None
            )
        rows.append(cells)
    return grid(rows, titles, [str(image["name"]) for image in images], settings.cell)
