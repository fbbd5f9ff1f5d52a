"""CAM scoring of a run's proposals, per image: the CAM forward pass and the proposal scores
(box and mask R, mask agreement) at the bounded scoring size against full resolution.

    python benchmarks/bench_cam_scoring.py --run runs/real --images 50      # one CPU thread

Needs a run with proposals and train-cam. Prints medians over the images and the ratio of
full-resolution scoring to bounded scoring; the largest absolute score difference between the two
is printed too, so the speed-up is never bought with unseen error.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint
from liid_cli.data.images import read_rgb
from liid_cli.data.index import load_index
from liid_cli.models.backbones import image_to_tensor, trunk_settings
from liid_cli.models.cam import CamClassifier, normalised_cams
from liid_cli.models.cam_scoring import proposal_scores, scoring_size
from liid_cli.proposals.store import open_proposals
from liid_cli.runner import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--images", type=int, default=50, help="images timed (the first N)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_manifest(artifacts.stage_dir(args.run, "train-cam"))
    if manifest is None:
        raise SystemExit(f"error: {args.run} has no finished train-cam; run `liid train-cam` first")
    index_path = Path(manifest["inputs"]["index"]["path"])
    index = load_index(index_path)
    cam_dir = artifacts.stage_dir(args.run, "train-cam")
    checkpoint = load_checkpoint(cam_dir / artifacts.CAM_CHECKPOINT)
    settings = checkpoint["config"]
    model = CamClassifier(trunk_settings(settings), index.classes.num_classes, weights="none")
    model.load_state_dict(checkpoint["model"])
    model.eval()
    side = max(model.trunk.stride, round(settings["input_size"] * settings["cam_scale"]))
    images = {int(image["id"]): image for image in index.images}
    forward, bounded, full, worst, sizes, counts = [], [], [], 0.0, [], []
    with torch.no_grad(), open_proposals(args.run, index_path) as store:
        for proposals in list(store)[: args.images]:
            image = images[proposals.image_id]
            classes = [k - 1 for k in index.labels(image)]
            if not classes or not len(proposals):
                continue
            rgb = read_rgb(index.image_path(image))
            sizes.append(rgb.shape[:2])
            counts.append(len(proposals))
            tensor = image_to_tensor(rgb, side)
            started = time.perf_counter()
            _, cams = normalised_cams(
                model, tensor, classes, rgb.shape[:2], settings["cam_flip_average"]
            )
            forward.append(time.perf_counter() - started)
            small_size = scoring_size(rgb.shape[:2], settings["score_side"])
            small = torch.nn.functional.interpolate(cams[None], size=small_size, mode="bilinear")[0]
            started = time.perf_counter()
            approximate = proposal_scores(
                small, proposals.boxes, proposals.masks(), classes, index.classes.num_classes
            )
            bounded.append(time.perf_counter() - started)
            started = time.perf_counter()
            exact = proposal_scores(
                cams, proposals.boxes, proposals.masks(), classes, index.classes.num_classes
            )
            full.append(time.perf_counter() - started)
            worst = max(worst, *(float(np.abs(a - e).max()) for a, e in zip(approximate, exact)))
    if not forward:
        raise SystemExit("error: no image with labels and proposals to time")
    height, width = np.median(np.array(sizes), axis=0)
    print(f"{len(forward)} images (median {width:.0f}x{height:.0f}), "
          f"{np.mean(counts):.0f} proposals per image, {args.threads} thread(s)")
    print(f"CAM forward at {side} px (flip-averaged: {settings['cam_flip_average']}): "
          f"median {1000 * np.median(forward):.1f} ms")
    print(f"proposal scoring at <= {settings['score_side']} px: median "
          f"{1000 * np.median(bounded):.1f} ms; at full size {1000 * np.median(full):.1f} ms; "
          f"ratio {np.median(full) / np.median(bounded):.1f}x; largest score difference {worst:.3f}")


if __name__ == "__main__":
    main()
