"""Synthetic dumps that look like a MIL network's output, for tests and benchmarks of `liid cut`.

Per image: 1-3 labelled classes by default (COCO-like counts are a setting) with Zipf-like
class frequencies, 1-3 instances per labelled class, and SOPs that are near-duplicate or part
proposals of an instance, background regions (several background modes per data set), or
ambiguous mixtures of two sources. Features are ReLU(B z + bias + noise) of a low-rank latent z,
so they are non-negative with a common mean direction and a decaying spectrum like pooled CNN
features; probabilities are a softmax of noisy logits with occasional confident mistakes. Writes a
data set index, `dump.h5` and a manifest for the dump stage marked `synthetic`, so
`liid cut --run RUN` runs on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from liid_cli import artifacts
from liid_cli.data.index import write_index
from liid_cli.fileio import file_sha256, text_sha256
from liid_cli.log import track


@dataclass(frozen=True)
class SyntheticDumpSpec:
    num_images: int = 100
    sops_per_image: int = 20
    num_classes: int = 20
    feature_dim: int = 2048
    latent_dim: int = 256
    background_modes: int = 24
    instance_spread: float = 2.0  # latent distance of instances from their class centre
    proposal_spread: float = 0.8  # latent spread of the proposals of one instance
    near_duplicate_share: float = 0.35  # proposals almost identical to another of the same instance
    ambiguous_share: float = 0.15
    background_share: float = 0.4
    mistake_share: float = 0.08  # confident probability on a wrong class
    # P(an image has 1, 2, ... labelled classes); VOC-like by default (mean 1.5), COCO has ~2.9
    label_count_weights: tuple[float, ...] = (0.6, 0.28, 0.12)
    seed: int = 0


def _class_frequencies(num_classes: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, num_classes + 1) ** 0.8
    return weights / weights.sum()


def _image_labels(spec: SyntheticDumpSpec, rng: np.random.Generator) -> list[np.ndarray]:
    frequencies = _class_frequencies(spec.num_classes)
    weights = np.asarray(spec.label_count_weights, dtype=float)
    sizes = rng.choice(
        np.arange(1, len(weights) + 1), size=spec.num_images, p=weights / weights.sum()
    )
    return [
        np.sort(
            rng.choice(
                spec.num_classes, size=min(int(s), spec.num_classes), replace=False, p=frequencies
            )
        )
        + 1
        for s in sizes
    ]


def _image_sops(
    spec: SyntheticDumpSpec, labels: np.ndarray, centres: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents (M, R), true class per SOP (M,), and the mixing partner's class (-1 if none)."""
    instances = [
        (c, centres[c] + spec.instance_spread * rng.standard_normal(spec.latent_dim))
        for c in labels
        for _ in range(rng.integers(1, 4))
    ]
    modes = spec.num_classes + 1 + rng.choice(spec.background_modes, size=2, replace=False)
    sources = [(0, centres[m] + 0.7 * rng.standard_normal(spec.latent_dim)) for m in modes]
    m = spec.sops_per_image
    kind = rng.random(m)
    latents = np.empty((m, spec.latent_dim))
    truth = np.empty(m, dtype=np.int64)
    partner = np.full(m, -1, dtype=np.int64)
    for j in range(m):
        if kind[j] < spec.background_share:
            cls, centre = sources[rng.integers(len(sources))]
        else:
            cls, centre = instances[rng.integers(len(instances))]
        latents[j] = centre + spec.proposal_spread * rng.standard_normal(spec.latent_dim)
        truth[j] = cls
        if kind[j] > 1.0 - spec.ambiguous_share:
            other_cls, other = (instances + sources)[rng.integers(len(instances) + len(sources))]
            mix = rng.uniform(0.3, 0.7)
            latents[j] = mix * latents[j] + (1 - mix) * other
            partner[j] = other_cls
    duplicates = np.flatnonzero(rng.random(m) < spec.near_duplicate_share)
    if len(duplicates):
        originals = rng.integers(m, size=len(duplicates))
        latents[duplicates] = latents[originals] + 0.05 * rng.standard_normal(
            (len(duplicates), spec.latent_dim)
        )
        truth[duplicates], partner[duplicates] = truth[originals], partner[originals]
    return latents, truth, partner


def _probabilities(
    spec: SyntheticDumpSpec, truth: np.ndarray, partner: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    m, width = len(truth), spec.num_classes + 1
    logits = rng.standard_normal((m, width))
    margin = rng.uniform(1.0, 6.0, size=m)
    rows = np.arange(m)
    mixed = partner >= 0
    logits[rows, truth] += np.where(mixed, 0.5, 1.0) * margin
    logits[rows[mixed], partner[mixed]] += 0.5 * margin[mixed]
    mistakes = rng.random(m) < spec.mistake_share
    logits[rows[mistakes], rng.integers(width, size=int(mistakes.sum()))] += margin[mistakes] + 1.0
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def write_synthetic_dump(
    root: Path, spec: SyntheticDumpSpec, chunk_images: int = 2000
) -> tuple[Path, Path]:
    """Write `root/index_train.json` and the run folder `root/run` with `dump/dump.h5`; return
    both."""
    rng = np.random.default_rng(spec.seed)
    root.mkdir(parents=True, exist_ok=True)
    categories = [{"id": c + 1, "name": f"class_{c + 1}"} for c in range(spec.num_classes)]
    image_labels = _image_labels(spec, rng)
    images = [
        {
            "id": i + 1,
            "name": f"synthetic_{i:07d}",
            "file_name": f"synthetic_{i:07d}.png",
            "width": 320,
            "height": 240,
            "labels": [int(c) for c in labels],
        }
        for i, labels in enumerate(image_labels)
    ]
    index_path = artifacts.index_path(root, "train")
    write_index(
        index_path,
        name="synthetic",
        split="train",
        categories=categories,
        images=images,
        image_root="images",
        ground_truth=None,
    )
    fingerprint = file_sha256(index_path)

    centres = 3.0 * rng.standard_normal(
        (spec.num_classes + 1 + spec.background_modes, spec.latent_dim)
    )
    spectrum = 1.0 / np.sqrt(np.arange(1, spec.latent_dim + 1)) ** 0.5
    basis = (
        rng.standard_normal((spec.latent_dim, spec.feature_dim))
        * spectrum[:, None]
        / np.sqrt(spec.latent_dim)
    ).astype(np.float32)
    bias = rng.uniform(0.0, 0.6, size=spec.feature_dim).astype(np.float32)
    total = spec.num_images * spec.sops_per_image
    label_matrix = np.zeros((spec.num_images, spec.num_classes + 1), dtype=np.float32)
    label_matrix[:, 0] = 1.0
    for i, labels in enumerate(image_labels):
        label_matrix[i, labels] = 1.0

    run_dir = root / "run"
    dump_dir = artifacts.stage_dir(run_dir, "dump")
    dump_dir.mkdir(parents=True, exist_ok=True)
    path = dump_dir / artifacts.DUMP_H5
    width, m = spec.num_classes + 1, spec.sops_per_image
    with h5py.File(path, "w") as handle:
        handle.attrs[artifacts.H5_SCHEMA_ATTR] = artifacts.SCHEMA_DUMP
        handle.attrs[artifacts.H5_FINGERPRINT_ATTR] = fingerprint
        handle.attrs["synthetic"] = json.dumps(asdict(spec))
        handle.create_dataset(
            artifacts.H5_IMAGE_IDS, data=np.arange(1, spec.num_images + 1, dtype=np.int64)
        )
        handle.create_dataset(
            artifacts.H5_OFFSETS, data=np.arange(spec.num_images + 1, dtype=np.int64) * m
        )
        handle.create_dataset(artifacts.H5_LABELS, data=label_matrix)
        chunk = (min(total, 4096),)
        probs = handle.create_dataset(
            artifacts.H5_PROBS, (total, width), np.float32, chunks=(*chunk, width)
        )
        features = handle.create_dataset(
            artifacts.H5_FEATURES,
            (total, spec.feature_dim),
            np.float16,
            chunks=(*chunk, spec.feature_dim),
        )
        handle.create_dataset(
            artifacts.H5_PROPOSAL_INDEX, data=np.tile(np.arange(m, dtype=np.int32), spec.num_images)
        )
        handle.create_dataset(
            artifacts.H5_BOXES,
            data=np.tile(np.array([[10, 10, 60, 80]], dtype=np.float32), (total, 1)),
        )
        truth_all = handle.create_dataset("synthetic_truth", (total,), np.int64)
        for first in track(
            range(0, spec.num_images, chunk_images),
            "synthetic dump",
            total=-(-spec.num_images // chunk_images),
        ):
            last = min(first + chunk_images, spec.num_images)
            parts = [_image_sops(spec, image_labels[i], centres, rng) for i in range(first, last)]
            latents = np.concatenate([p[0] for p in parts]).astype(np.float32)
            truth = np.concatenate([p[1] for p in parts])
            partner = np.concatenate([p[2] for p in parts])
            noise = 0.15 * rng.standard_normal((len(latents), spec.feature_dim), dtype=np.float32)
            block = np.maximum(latents @ basis + bias + noise, 0.0)
            rows = slice(first * m, last * m)
            features[rows] = block.astype(np.float16)
            probs[rows] = _probabilities(spec, truth, partner, rng)
            truth_all[rows] = truth
    manifest = {
        "schema": artifacts.SCHEMA_MANIFEST,
        "stage": "dump",
        "synthetic": True,
        "fingerprint": text_sha256(json.dumps(asdict(spec), sort_keys=True) + fingerprint),
        "inputs": {"index": {"path": str(index_path.resolve()), "fingerprint": fingerprint}},
        "metrics": {"sops": total},
    }
    (dump_dir / artifacts.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return index_path, run_dir
