"""Benchmark: built-in selective search (masks) vs OpenCV's selective search (boxes), one core.

Images: 500x375 from the demo generator (shapes on textured clutter, with instance ground truth).
Prints the median seconds per image of each method, as CPU time of this process (what one core
spends; robust on a shared machine) and as wall time, their ratio (goal: ours / OpenCV <= 2, and
ours <= 1 s per image) and box recall at IoU 0.5 / 0.7 at the same proposal count (goal: ours >=
OpenCV's). OpenCV comes from opencv-contrib-python-headless (`ximgproc.segmentation`, fast mode);
without it only our side is measured, and the script says so.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_proposals.py [--images 20] [--count 20]
        [--width 500] [--height 375]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy loads

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from liid_cli import masks
from liid_cli.config import load_stage_config
from liid_cli.data.demo import SHAPES, generate_image
from liid_cli.evaluation.proposals import box_iou
from liid_cli.proposals.generate import ImageTask, ProposalsConfig, propose


def opencv_search() -> Callable[[np.ndarray], np.ndarray] | None:
    """OpenCV's fast selective search on one RGB image (xyxy boxes, ranked); None without it."""
    try:
        import cv2
    except ImportError:
        return None
    if not hasattr(cv2, "ximgproc"):
        return None
    cv2.setNumThreads(1)

    def search(image: np.ndarray) -> np.ndarray:
        segmentation = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        segmentation.setBaseImage(np.ascontiguousarray(image[..., ::-1]))
        segmentation.switchToSelectiveSearchFast()
        rects = np.asarray(segmentation.process(), dtype=np.float32).reshape(-1, 4)
        return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)  # xyxy, ranked

    return search


def recall(truth: list[np.ndarray], boxes: np.ndarray, threshold: float) -> list[bool]:
    if not truth:
        return []
    if len(boxes) == 0:
        return [False] * len(truth)
    return list(box_iou(np.stack(truth), boxes).max(axis=1) >= threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--count", type=int, default=20, help="proposals per image compared")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    args = parser.parse_args()

    config = load_stage_config("proposals", ProposalsConfig, overrides=[f"top_n={args.count}"])
    task = ImageTask(
        record={"id": 0}, image_path=Path("-"), source=None, rle_entries=[], refine=None
    )
    opencv = opencv_search()
    rng = np.random.default_rng(args.seed)
    scenes = [generate_image(rng, args.height, args.width, list(SHAPES)) for _ in range(args.images)]

    times: dict[str, list[float]] = {"liid": [], "opencv": []}
    walls: dict[str, list[float]] = {"liid": [], "opencv": []}
    found: dict[str, dict[float, list[bool]]] = {
        "liid": {0.5: [], 0.7: []},
        "opencv": {0.5: [], 0.7: []},
    }
    opencv_all: list[bool] = []  # OpenCV with every box it returns, for context
    opencv_counts: list[int] = []
    propose(config, scenes[0][0], task)  # warm-up (imports, caches)
    for image, instances in scenes:
        truth = [masks.box_xyxy(mask) for _, mask in instances]
        start, wall = time.process_time(), time.perf_counter()
        kept, _ = propose(config, image, task)
        times["liid"].append(time.process_time() - start)
        walls["liid"].append(time.perf_counter() - wall)
        ours = np.stack([masks.box_xyxy(m) for m in kept]) if len(kept) else np.zeros((0, 4))
        boxes = {"liid": ours}
        if opencv is not None:
            start, wall = time.process_time(), time.perf_counter()
            every = opencv(image)
            times["opencv"].append(time.process_time() - start)
            walls["opencv"].append(time.perf_counter() - wall)
            boxes["opencv"] = every[: args.count]
            opencv_all.extend(recall(truth, every, 0.5))
            opencv_counts.append(len(every))
        for name, method_boxes in boxes.items():
            for threshold in (0.5, 0.7):
                found[name][threshold].extend(recall(truth, method_boxes, threshold))

    n_truth = len(found["liid"][0.5])
    print(
        f"{args.images} images of {args.width}x{args.height}, {n_truth} objects, "
        f"{args.count} proposals per image, "
        f"one core (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
    )
    for name in ("liid", "opencv"):
        if not times[name]:
            print(
                f"{name:>7}: not measured: opencv-contrib-python-headless (cv2.ximgproc) "
                "is missing; "
                "`.venv/bin/pip install opencv-contrib-python-headless` to compare"
            )
            continue
        recalls = "  ".join(f"box recall@{t} {np.mean(found[name][t]):.3f}" for t in (0.5, 0.7))
        print(
            f"{name:>7}: median CPU {statistics.median(times[name]):.3f} s/image "
            f"(wall {statistics.median(walls[name]):.3f})  {recalls}"
        )
    if times["opencv"]:
        print(
            f"         (opencv with all its boxes, median "
            f"{int(statistics.median(opencv_counts))} per image: "
            f"box recall@0.5 {np.mean(opencv_all):.3f})"
        )
        ratio = statistics.median(times["liid"]) / statistics.median(times["opencv"])
        wall_ratio = statistics.median(walls["liid"]) / statistics.median(walls["opencv"])
        delta = np.mean(found["liid"][0.5]) - np.mean(found["opencv"][0.5])
        print(
            f"time ratio liid/opencv: CPU {ratio:.2f}, wall {wall_ratio:.2f} (goal <= 2); "
            f"box recall@0.5 liid - opencv: {delta:+.3f} (goal >= 0)"
        )
    print(f"liid median CPU {statistics.median(times['liid']):.3f} s/image (goal <= 1 s)")


if __name__ == "__main__":
    main()
