"""Time `export-coco`, instance evaluation and `viz` at demo scale (300 train images of 160 px).

The cut is a known answer written straight from the ground truth (each object, a copy shifted by
2 px with a lower score, two noise regions labelled 0; CAM agreement 1 for objects and copies), so
the numbers measure export/eval/viz, not the upstream stages. Prints medians over a few repeats.

    .venv/bin/python benchmarks/bench_export_eval.py [--repeats 3] [--images 300] [--size 160]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import artifacts, masks
from liid_cli.config import StageConfig, load_stage_config
from liid_cli.data.demo import DemoSpec, generate
from liid_cli.data.index import load_index
from liid_cli.evaluation.instances import evaluate_instances
from liid_cli.fileio import file_sha256, read_json
from liid_cli.h5store import write_csr
from liid_cli.log import setup_logging
from liid_cli.proposals.store import ImageProposals, write_proposals
from liid_cli.runner import StageContext, StageSpec, run_stage
from liid_cli.stages import export_coco
from liid_cli.viz.run import VizConfig, run_viz

OBJECT_SCORE, COPY_SCORE, NOISE_SCORE = 0.9, 0.6, 0.8


class NoConfig(StageConfig):
    pass


def make_cut_run(index_path: Path, run_dir: Path) -> None:
    """Write <run>/proposals, <run>/cam (agreements) and <run>/cut (with manifests) from the truth."""
    index = load_index(index_path)
    by_image: dict[int, list[dict[str, Any]]] = {image["id"]: [] for image in index.images}
    for annotation in read_json(index.ground_truth_path)["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    fingerprint = file_sha256(index_path)
    image_ids = np.array([image["id"] for image in index.images])
    proposals: list[ImageProposals] = []
    labels, scores, agreements = [], [], []
    for image in index.images:
        kept = by_image[image["id"]]
        objects = np.zeros((len(kept), image["height"], image["width"]), dtype=bool)
        for row, annotation in enumerate(kept):
            objects[row] = masks.decode(annotation["segmentation"])
        copies = np.zeros_like(objects)
        copies[:, :, 2:] = objects[:, :, :-2]
        noise = np.zeros((2, *objects.shape[1:]), dtype=bool)
        noise[0, :10, :10] = True
        noise[1, -12:, -20:] = True
        stack = np.concatenate([objects, copies, noise])
        proposals.append(
            ImageProposals.from_masks(image["id"], stack, np.linspace(1, 0.5, len(stack)))
        )
        classes = [index.classes.to_internal(a["category_id"]) for a in kept]
        labels.append(np.array([*classes, *classes, 0, 0], dtype=np.int32))
        scores.append(
            np.array([OBJECT_SCORE] * len(kept) + [COPY_SCORE] * len(kept) + [NOISE_SCORE] * 2,
                     dtype=np.float32)
        )
        table = np.zeros((len(stack), index.classes.num_classes), dtype=np.float32)
        for row, label in enumerate(classes):
            table[[row, len(kept) + row], label - 1] = 1.0
        agreements.append(table)
    counts = np.array([len(rows) for rows in labels])

    def write_proposal_stage(config: NoConfig, context: StageContext) -> dict[str, Any]:
        write_proposals(context.out_dir / artifacts.PROPOSALS_H5, fingerprint, proposals)
        return {}

    def write_cam_stage(config: NoConfig, context: StageContext) -> dict[str, Any]:
        table = np.concatenate(agreements)
        write_csr(
            context.out_dir / artifacts.CAM_SCORES_H5,
            schema=artifacts.SCHEMA_CAM_SCORES,
            fingerprint=fingerprint,
            image_ids=image_ids,
            counts=counts,
            rows={
                artifacts.H5_CAM_BOX_SCORES: np.zeros_like(table),
                artifacts.H5_CAM_MASK_SCORES: np.zeros_like(table),
                artifacts.H5_CAM_MASK_AGREEMENT: table,
            },
        )
        return {}

    def write_nothing(config: NoConfig, context: StageContext) -> dict[str, Any]:
        return {}

    def write_cut_stage(config: NoConfig, context: StageContext) -> dict[str, Any]:
        write_csr(
            context.out_dir / artifacts.CUT_H5,
            schema=artifacts.SCHEMA_CUT,
            fingerprint=fingerprint,
            image_ids=image_ids,
            counts=counts,
            rows={
                artifacts.H5_LABELS: np.concatenate(labels),
                artifacts.H5_SCORES: np.concatenate(scores),
                artifacts.H5_PROPOSAL_INDEX: np.concatenate([np.arange(n, dtype=np.int32) for n in counts]),
                artifacts.H5_COMPONENT: np.zeros(int(counts.sum()), dtype=np.int32),
            },
            attrs={"solver": "multiway", "energy": 0.0, "lower_bound": 0.0, "gap": 0.0},
        )
        return {}

    for name, write in (
        ("proposals", write_proposal_stage),
        ("train-cam", write_cam_stage),
        ("train-mil", write_nothing),
        ("dump", write_nothing),
        ("cut", write_cut_stage),
    ):
        spec = StageSpec(name=name, config_model=NoConfig, run=write)
        run_stage(spec, NoConfig(), run_dir=run_dir, index_path=index_path, force=True)
    for placeholder in ("train-mil", "dump"):  # only there because the registry has cut read dump
        shutil.rmtree(artifacts.stage_dir(run_dir, placeholder))


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=DemoSpec.n_train, help="train images")
    parser.add_argument("--size", type=int, default=DemoSpec.size, help="demo image size (px)")
    args = parser.parse_args()
    setup_logging(quiet=True)
    with tempfile.TemporaryDirectory() as folder:
        data, run_dir = Path(folder) / "demo", Path(folder) / "run"
        generate(data, DemoSpec(n_train=args.images, n_val=1, size=args.size))
        index_path = artifacts.index_path(data, "train")
        make_cut_run(index_path, run_dir)
        config = load_stage_config("export-coco", export_coco.ExportCocoConfig)
        export = median_seconds(
            lambda: run_stage(export_coco.SPEC, config, run_dir=run_dir, index_path=index_path,
                              force=True), args.repeats)
        pseudo = artifacts.stage_dir(run_dir, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
        gt = artifacts.gt_path(data, "train")
        evaluate = median_seconds(lambda: evaluate_instances(gt, pseudo), args.repeats)
        viz_config = load_stage_config("viz", VizConfig)
        viz = median_seconds(lambda: run_viz(run_dir, None, viz_config, 0), args.repeats)
    print(f"images: {args.images} of {args.size} px, {args.repeats} repeat(s)")
    print(f"export-coco: median {export:.2f} s ({1000 * export / args.images:.1f} ms/image)")
    print(f"evaluate_instances: median {evaluate:.2f} s "
          f"({1000 * evaluate / args.images:.1f} ms/image, {evaluate / export:.2f}x export)")
    print(f"viz (grid of {viz_config.max_images} images + report): median {viz:.2f} s "
          f"({viz / export:.2f}x export)")


if __name__ == "__main__":
    main()
