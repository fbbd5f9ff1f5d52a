"""Choose selective search's ranking cues on one part of a data set, check them on another.

For each image of a data set index with ground truth, the hierarchies of every strategy are built
once; each setting of a grid (superpixel scales x strategy-agreement weight x fill weight) then
re-scores the regions, liid's proposal filter keeps the top N, and the kept masks are scored
against the ground-truth instances (mask AR over IoU 0.5:0.95 and recall at IoU 0.5, at the
working size). Prints one row per setting, AR relative to the first row (the `real` profile
without the cues), and the median seconds per image of the search and of the agreement.

    .venv/bin/python benchmarks/proposal_ranking.py --data runs/halfA/data/index_train.json
        [--images N] [--top 40 100] [--scales 100 --scales 50,100,200]
        [--agreement 0 0.03 0.05] [--fill 0 0.1 0.2 0.3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from liid_cli import masks
from liid_cli.config import load_stage_config
from liid_cli.data.images import read_rgb
from liid_cli.data.index import load_index
from liid_cli.evaluation.labels import annotations_by_image
from liid_cli.evaluation.proposals import AR_THRESHOLDS, best_overlaps
from liid_cli.fileio import read_json
from liid_cli.proposals.filtering import FilterSettings, RegionCandidates, select
from liid_cli.proposals.generate import ProposalsConfig
from liid_cli.proposals.objectness import add_cues
from liid_cli.proposals.selective_search import Strategy, selective_search
from liid_cli.proposals.store import ImageProposals
from liid_cli.proposals.working_size import working_image


def truth_at(
    image: dict, annotations: list[dict], size: tuple[int, int]
) -> tuple[list[dict], np.ndarray]:
    """The image's ground-truth masks at the working `size` (h, w): RLEs and xyxy boxes."""
    height, width = int(image["height"]), int(image["width"])
    rles, boxes = [], []
    for annotation in annotations:
        full = masks.decode(masks.segmentation_rle(annotation["segmentation"], height, width))
        small = cv2.resize(full.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
        rles.append(masks.encode(small.astype(bool)))
        boxes.append(masks.box_xyxy(small.astype(bool)))
    return rles, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="index_<split>.json with truth")
    parser.add_argument("--images", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--top", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--scales", action="append", help="comma-separated Felzenszwalb scales")
    parser.add_argument("--agreement", type=float, nargs="+", default=[0.0, 0.03, 0.05])
    parser.add_argument("--fill", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3])
    args = parser.parse_args()
    scale_sets = [tuple(float(s) for s in text.split(",")) for text in args.scales or
                  ["100", "50,100,200"]]
    config = load_stage_config("proposals", ProposalsConfig, profile="real")
    search = config.selective_search
    scales = sorted({s for scale_set in scale_sets for s in scale_set})
    similarities = tuple(search.similarity_sets[0])
    strategies = [Strategy(space, scale, similarities)
                  for space in search.colour_spaces for scale in scales]
    index = load_index(args.data)
    if index.ground_truth_path is None:
        raise SystemExit(f"{args.data}: no ground truth to score proposals against")
    truth = annotations_by_image(read_json(index.ground_truth_path))
    images = index.images[: args.images or None]
    grid = list(itertools.product(scale_sets, args.agreement, args.fill))
    settings = FilterSettings(
        max(args.top), config.max_iou, config.diverse_iou, config.min_area, config.max_area
    )
    hits = np.zeros((len(grid), len(args.top), len(AR_THRESHOLDS)))
    instances = 0
    search_seconds, agreement_seconds = [], []
    for image in images:
        rgb = working_image(read_rgb(index.image_path(image)), search.max_side)
        height, width = rgb.shape[:2]
        started = time.perf_counter()
        hierarchies = selective_search(rgb, strategies, search.sigma, search.min_size_ratio,
                                       search.small_region_penalty)
        search_seconds.append(time.perf_counter() - started)
        gt, gt_boxes = truth_at(image, truth.get(int(image["id"]), []), (height, width))
        instances += len(gt)
        for row, (scale_set, agreement_weight, fill_weight) in enumerate(grid):
            chosen = [h for h, s in zip(hierarchies, strategies, strict=True) if s.scale in scale_set]
            candidates = RegionCandidates(chosen)
            started = time.perf_counter()
            add_cues(
                candidates, float(height * width), agreement_weight=agreement_weight,
                agreement_iou=search.agreement_iou, fill_weight=fill_weight,
                area_range=(config.min_area, config.max_area),
            )
            if agreement_weight:
                agreement_seconds.append(time.perf_counter() - started)
            kept, scores = select(candidates, settings, height, width)
            proposals = ImageProposals.from_masks(int(image["id"]), kept, scores)
            best = best_overlaps(gt, gt_boxes, proposals, args.top)["mask"]  # (counts, G)
            hits[row] += (best[:, None] >= AR_THRESHOLDS[None, :, None]).sum(axis=2)
    print(f"{len(images)} images, {instances} instances; median s/image: search "
          f"{statistics.median(search_seconds):.2f} ({len(strategies)} strategies), agreement "
          f"{statistics.median(agreement_seconds or [0.0]):.3f}")
    header = "".join(f"   AR@{n:<4d} R.5@{n:<4d}" for n in args.top)
    print(f"{'scales':14s} {'agreement':>9s} {'fill':>5s}{header}   AR@{args.top[0]} ratio")
    reference = hits[0, 0].mean() or 1.0
    for row, (scale_set, agreement_weight, fill_weight) in enumerate(grid):
        figures = "".join(
            f"   {100 * hits[row, c].mean() / max(instances, 1):6.1f} "
            f"{100 * hits[row, c, 0] / max(instances, 1):8.1f}" for c in range(len(args.top))
        )
        print(f"{','.join(f'{s:g}' for s in scale_set):14s} {agreement_weight:9.2f} "
              f"{fill_weight:5.2f}{figures}   {hits[row, 0].mean() / reference:.2f}")


if __name__ == "__main__":
    main()
