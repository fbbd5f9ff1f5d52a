"""Stage `proposals`: segment-based object proposals (masks, boxes, rank scores) for every image.

Reads the data set index (and, for the importers, `liid proposals --import PATH`); writes
`<run>/proposals/proposals.h5` (schema liid.proposals/1, see proposals/store.py).

Work is split into chunks of images. Finished chunks are kept in the stage's cache folder, so an
interrupted run recomputes only unfinished chunks; `--workers N` runs chunks in N processes.
`--shard i/n` (run_shard) computes a contiguous 1/n of the chunks and writes
`<run>/proposal_parts/part-<i>-of-<n>.h5`; a plain run then takes every image it finds in parts
made with the same config and data set, computes whatever is missing, and writes proposals.h5.
Selective search runs on the CPU (no GPU step); scale it with --workers and shards.
`--refine-masks BOX2MASK.pt` replaces each kept proposal's mask by the learned mask of its box
(proposals/refine.py; the network runs on the stage's device).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from liid_cli import __version__, artifacts
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256, text_sha256
from liid_cli.log import log, track
from liid_cli.proposals import importers
from liid_cli.proposals.generate import (
    ImageTask,
    ProposalsConfig,
    proposals_for_image,
)
from liid_cli.proposals.refine import RefineSettings, check_model
from liid_cli.proposals.store import ImageProposals, open_proposals_file, write_proposals
from liid_cli.runner import StageContext, StageInput, StageSpec

SOURCE = StageInput("source", "proposals to import: pass --import FILE")
REFINE_MASKS = StageInput("refine_masks", "a box-to-mask checkpoint: pass --refine-masks FILE")

CHUNK_IMAGES = 8  # images per resumable unit of work
PART_KEY_ATTR = "work_key"

# --- chunks, resume, workers ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkJob:
    config: ProposalsConfig
    tasks: list[ImageTask]
    out: Path
    fingerprint: str


def _run_chunk(job: ChunkJob) -> int:
    write_proposals(
        job.out, job.fingerprint, [proposals_for_image(job.config, t) for t in job.tasks]
    )
    return len(job.tasks)


def work_key(
    config: ProposalsConfig, fingerprint: str, seed: int, refine_model: Path | None
) -> str:
    """Identifies results that can be reused: same config, data set, seed, refining model (by
    content) and liid version."""
    return text_sha256(
        json.dumps(
            {
                "config": config.model_dump(mode="json"),
                "index": fingerprint,
                "seed": seed,
                "refine_model": file_sha256(refine_model) if refine_model else None,
                "version": __version__,
            },
            sort_keys=True,
        )
    )[:16]


def _refine_settings(
    config: ProposalsConfig, model: Path | None, device: str
) -> RefineSettings | None:
    if model is None:
        return None
    return RefineSettings(model, device, config.refine.threshold, config.refine.clip_to_box)


def _tasks(
    config: ProposalsConfig,
    index: DatasetIndex,
    source: Path | None,
    refine_with: RefineSettings | None,
) -> list[ImageTask]:
    if config.method != "selective_search" and source is None:
        raise LiidError(f"proposals method {config.method!r} imports proposals: pass --import PATH")
    if config.method == "selective_search" and source is not None:
        raise LiidError(
            "--import PATH needs an importer method (mcg, rle_json, label_png), "
            "not selective_search; e.g. --set method=mcg"
        )
    rle: dict[int, importers.RleEntries] = {}
    if config.method == "rle_json":
        assert source is not None
        rle = importers.load_rle_json(source, (image["id"] for image in index.images))
    return [
        ImageTask(
            image, index.image_path(image), source, rle.get(int(image["id"]), []), refine_with
        )
        for image in index.images
    ]


def _chunk_jobs(
    config: ProposalsConfig, tasks: list[ImageTask], folder: Path, fingerprint: str
) -> list[ChunkJob]:
    return [
        ChunkJob(
            config,
            tasks[start : start + CHUNK_IMAGES],
            folder / f"chunk-{start // CHUNK_IMAGES:06d}.h5",
            fingerprint,
        )
        for start in range(0, len(tasks), CHUNK_IMAGES)
    ]


def _compute(jobs: list[ChunkJob], workers: int) -> None:
    """Run the jobs whose chunk file does not exist yet (finished chunks survive interruptions)."""
    pending = [job for job in jobs if not job.out.is_file()]
    if len(pending) < len(jobs):
        log.info(
            f"proposals: resuming, {len(jobs) - len(pending)} of {len(jobs)} chunks already done"
        )
    if not pending:
        return
    pending[0].out.parent.mkdir(parents=True, exist_ok=True)
    images = sum(len(job.tasks) for job in pending)
    for _ in track(
        _finished(pending, workers), f"proposals ({images} images, chunks)", len(pending)
    ):
        pass


def _finished(jobs: list[ChunkJob], workers: int) -> Iterator[int]:
    """Run the jobs, in this process or a pool of `workers` processes; yield as each finishes."""
    if workers <= 1:
        for job in jobs:
            yield _run_chunk(job)
        return
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        for future in as_completed([pool.submit(_run_chunk, job) for job in jobs]):
            yield future.result()


def _read_all(paths: list[Path], fingerprint: str) -> dict[int, ImageProposals]:
    found: dict[int, ImageProposals] = {}
    for path in paths:
        with open_proposals_file(path, fingerprint) as store:
            found.update((p.image_id, p) for p in store)
    return found


def _matching_parts(run_dir: Path, key: str) -> list[Path]:
    folder = run_dir / artifacts.PROPOSAL_PARTS_DIR
    parts = []
    for path in sorted(folder.glob("part-*.h5")):
        with h5py.File(path, "r") as handle:
            if handle.attrs.get(PART_KEY_ATTR) == key:
                parts.append(path)
    return parts


# --- stage and shard entry points -----------------------------------------------------------------


def run(config: ProposalsConfig, context: StageContext) -> dict[str, Any]:
    """Proposals for every image of the index -> `<out>/proposals.h5`; reuses finished chunks
    from the cache and images found in matching shard parts."""
    index = load_index(context.index_path)
    fingerprint = file_sha256(context.index_path)
    model = context.input(REFINE_MASKS)
    refined = _check_refine_model(config, index, model, context.device)
    key = work_key(config, fingerprint, context.seed, model)
    refine_with = _refine_settings(config, model, context.device)
    tasks = _tasks(config, index, context.input(SOURCE), refine_with)
    parts = _matching_parts(context.run_dir, key)
    from_parts = _read_all(parts, fingerprint)
    if parts:
        log.info(f"proposals: {len(from_parts)} images taken from {len(parts)} shard part(s)")
    jobs = [
        job
        for job in _chunk_jobs(config, tasks, context.cache_dir / key, fingerprint)
        if any(int(t.record["id"]) not in from_parts for t in job.tasks)
    ]
    _compute(jobs, context.workers)
    results = {**from_parts, **_read_all([job.out for job in jobs], fingerprint)}
    ordered = [results[int(image["id"])] for image in index.images]
    write_proposals(
        context.out_dir / artifacts.PROPOSALS_H5,
        fingerprint,
        ordered,
        attrs={"method": config.method, "masks": "box2mask" if model else "bottom_up"},
    )
    counts = np.array([len(p) for p in ordered])
    return {
        "images": len(ordered),
        "proposals": int(counts.sum()),
        "mean_per_image": float(counts.mean()) if len(counts) else 0.0,
        "images_without_proposals": int((counts == 0).sum()),
        "from_shard_parts": len(from_parts),
        **refined,
    }


def _check_refine_model(
    config: ProposalsConfig, index: DatasetIndex, model: Path | None, device: str
) -> dict[str, Any]:
    """Metrics of the refining model; refuses a model unusable here (see refine.check_model)."""
    if model is None:
        return {"masks": "bottom_up", "weakly_supervised": True}
    names = [str(c["name"]) for c in index.categories]
    seen = check_model(model, device, names, config.refine.allow_seen_classes)
    if seen:
        log.warning(
            f"proposals: the box-to-mask model saw masks of {seen}; this run is NOT weakly supervised"
        )
    return {
        "masks": "box2mask",
        "refine_model": str(model),
        "weakly_supervised": not seen,
        "seen_classes": seen,
    }


def run_shard(
    config: ProposalsConfig,
    *,
    index_path: Path,
    run_dir: Path,
    seed: int,
    workers: int,
    shard: int,
    count: int,
    source: Path | None,
    refine_model: Path | None = None,
    device: str = "cpu",
) -> Path:
    """Compute shard `shard` of `count` (a contiguous run of chunks) and write its part file."""
    if not index_path.is_file():
        raise LiidError(f"{index_path}: data set index not found; run `liid data ...` to make it")
    index = load_index(index_path)
    fingerprint = file_sha256(index_path)
    _check_refine_model(config, index, refine_model, device)
    key = work_key(config, fingerprint, seed, refine_model)
    jobs = _chunk_jobs(
        config,
        _tasks(config, index, source, _refine_settings(config, refine_model, device)),
        artifacts.cache_dir(run_dir, "proposals") / key,
        fingerprint,
    )
    mine = jobs[shard * len(jobs) // count : (shard + 1) * len(jobs) // count]
    _compute(mine, workers)
    found = _read_all([job.out for job in mine], fingerprint)
    ordered = [found[int(t.record["id"])] for job in mine for t in job.tasks]
    path = (
        run_dir
        / artifacts.PROPOSAL_PARTS_DIR
        / artifacts.PROPOSAL_PART_FILE.format(index=shard, count=count)
    )
    write_proposals(
        path, fingerprint, ordered, attrs={PART_KEY_ATTR: key, "shard": f"{shard}/{count}"}
    )
    return path


SPEC = StageSpec("proposals", ProposalsConfig, run=run, inputs=(SOURCE, REFINE_MASKS))
