"""A stand-in `liid proposals` for the CAM/MIL/dump tests: ground-truth masks plus random blobs.

Written through the real runner, so downstream stages find a proposals manifest and a proposals.h5
of the real schema. Each image gets its ground-truth instance masks, each ground-truth mask grown
into its box, and random ellipses and rectangles (mostly background); chosen images get none.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import artifacts, masks, registry
from liid_cli.config import StageConfig, load_stage_config
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256, read_json
from liid_cli.proposals.store import ImageProposals, write_proposals
from liid_cli.runner import StageContext, StageSpec, run_stage


class FakeProposalsConfig(StageConfig):
    random_per_image: int
    empty_image_ids: tuple[int, ...]


def _random_blobs(
    rng: np.random.Generator, height: int, width: int, count: int
) -> list[np.ndarray]:
    rows, cols = np.mgrid[:height, :width]
    blobs = []
    for _ in range(count):
        h, w = rng.uniform(0.15, 0.6) * height, rng.uniform(0.15, 0.6) * width
        cy, cx = rng.uniform(h / 2, height - h / 2), rng.uniform(w / 2, width - w / 2)
        if rng.random() < 0.5:
            blob = ((rows - cy) / (h / 2)) ** 2 + ((cols - cx) / (w / 2)) ** 2 <= 1.0
        else:
            blob = (np.abs(rows - cy) <= h / 2) & (np.abs(cols - cx) <= w / 2)
        blobs.append(blob)
    return blobs


def _run(config: FakeProposalsConfig, context: StageContext) -> dict[str, Any]:
    index = load_index(context.index_path)
    ground_truth = read_json(index.ground_truth_path)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    rng = np.random.default_rng(context.seed)
    proposals = []
    for image in index.images:
        height, width = image["height"], image["width"]
        stack: list[np.ndarray] = []
        if image["id"] not in config.empty_image_ids:
            for annotation in by_image[image["id"]]:
                mask = masks.decode(annotation["segmentation"])
                x0, y0, x1, y1 = masks.box_xyxy(mask).astype(int)
                grown = np.zeros_like(mask)
                grown[y0:y1, x0:x1] = True
                stack += [mask, grown]
            stack += _random_blobs(rng, height, width, config.random_per_image)
        order = rng.permutation(len(stack))
        mask_stack = (
            np.stack([stack[i] for i in order]) if stack else np.zeros((0, height, width), bool)
        )
        proposals.append(ImageProposals.from_masks(image["id"], mask_stack, rng.random(len(stack))))
    write_proposals(
        context.out_dir / artifacts.PROPOSALS_H5, file_sha256(context.index_path), proposals
    )
    return {"proposals": sum(len(p) for p in proposals)}


FAKE_PROPOSALS = StageSpec(
    name="proposals", config_model=FakeProposalsConfig, run=_run
)


def write_fake_proposals(
    run_dir: Path,
    index_path: Path,
    *,
    random_per_image: int = 6,
    empty_image_ids: tuple[int, ...] = (),
    seed: int = 0,
) -> None:
    run_stage(
        FAKE_PROPOSALS,
        FakeProposalsConfig(random_per_image=random_per_image, empty_image_ids=empty_image_ids),
        run_dir=run_dir,
        index_path=index_path,
        seed=seed,
    )


TEST_SETTINGS = {
    "train-cam": ["input_size=48", "epochs=1", "batch_size=8", "save_cams=true", "save_cams_max=2"],
    "train-mil": ["input_size=48", "epochs=2", "roi_size=2"],
    "dump": ["batch_size=4"],
}


def run_demo_stage(
    stage: str, run_dir: Path, index_path: Path | None = None, *extra: str, force: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run one of the CAM/MIL/dump stages with its demo profile shrunk for tests; its manifest."""
    spec = registry.stage(stage).spec()
    config = load_stage_config(
        spec.name, spec.config_model, profile="demo", overrides=[*TEST_SETTINGS[stage], *extra]
    )
    return run_stage(
        spec, config, run_dir=run_dir, index_path=index_path, force=force, resume=resume
    )
