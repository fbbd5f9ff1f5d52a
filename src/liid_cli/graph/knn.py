"""Cosine top-k neighbours of every SOP among the SOPs of the data set, and the edge filters.

The features are streamed from HDF5 once, normalised and kept as float16 (N x D x 2 bytes), then
searched exactly (`knn_exact`: blocked matmul, memory bounded by the block size on CPU) or
approximately (`knn_ivf`: faiss IVF candidates re-ranked by exact cosine). For the approximate
backend a random sample of queries is also searched exactly, so every run prints its recall@k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np
import torch

from liid_cli.graph.dump import DumpData, FeatureStream
from liid_cli.graph.knn_exact import exact_topk, load_normalised, merge_topk, triples
from liid_cli.graph.knn_ivf import ApproximateSettings, approximate_search, principal_basis, project
from liid_cli.log import log


@dataclass(frozen=True)
class Neighbours:
    """Directed kNN edges: `rows[i]`'s neighbour `cols[i]` with cosine `similarity[i]`."""

    rows: np.ndarray
    cols: np.ndarray
    similarity: np.ndarray
    backend: str
    recall: float | None = None  # recall@k against exact search on `recall_queries` sampled SOPs
    smallest: float = 0.0  # the smallest similarity of any pair found (before any filtering)
    recall_queries: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def keep_class_sharing(neighbours: Neighbours, dump: DumpData) -> Neighbours:
    """Drop the edges between SOPs of images that share no labelled class (the authors' code:
    after the search over all SOPs, so an SOP may keep fewer than k edges)."""
    labels = dump.image_labels[:, 1:].astype(bool)
    tails, heads = dump.sop_image[neighbours.rows], dump.sop_image[neighbours.cols]
    shared = (labels[tails] & labels[heads]).any(axis=1)
    return replace(
        neighbours,
        rows=neighbours.rows[shared],
        cols=neighbours.cols[shared],
        similarity=neighbours.similarity[shared],
    )


def neighbour_table(neighbours: Neighbours, num_sops: int, k: int) -> np.ndarray:
    """(num_sops, k) int32: each SOP's neighbours, most similar first, -1 where it has fewer."""
    table = np.full((num_sops, k), -1, dtype=np.int32)
    order = np.lexsort((-neighbours.similarity, neighbours.rows))
    rows, cols = neighbours.rows[order], neighbours.cols[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.arange(len(rows)) - starts
    kept = rank < k
    table[rows[kept], rank[kept]] = cols[kept]
    return table


def keep_mutual(neighbours: Neighbours) -> Neighbours:
    """Keep an edge u -> v only when v -> u was found too (mutual nearest neighbours)."""
    pairs = list(zip(neighbours.rows.tolist(), neighbours.cols.tolist()))
    found = set(pairs)
    keep = np.array([(v, u) in found for u, v in pairs], dtype=bool)
    return replace(
        neighbours,
        rows=neighbours.rows[keep],
        cols=neighbours.cols[keep],
        similarity=neighbours.similarity[keep],
    )


def find_knn(
    stream: FeatureStream,
    k: int,
    device: str,
    approximate: ApproximateSettings | None,
    recall_sample: int,
    rng: np.random.Generator,
    threads: int,
    spill: Path | None = None,
    owners: np.ndarray | None = None,
) -> Neighbours:
    """Top-k cosine neighbours of every SOP among the SOPs of other owners (`owners`: an id per
    SOP, e.g. its image; default: each SOP its own owner); exact when `approximate` is None, else
    IVF + exact re-ranking with recall@k measured against exact search on `recall_sample` SOPs."""
    started = time.perf_counter()
    features = load_normalised(stream, spill)
    loaded = time.perf_counter()
    members = np.arange(len(features))
    owners = members if owners is None else np.asarray(owners, dtype=np.int64)
    if approximate is None:
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        vectors = features.to(device, dtype)
        owner = torch.from_numpy(owners).to(device)
        found = triples(members, members, *exact_topk(vectors, vectors, k, owner, owner))
        rows, cols, sims = merge_topk(*found, k)
        return Neighbours(
            rows,
            cols,
            sims,
            backend=f"exact-{device.split(':')[0]}",
            recall=1.0,
            smallest=float(sims.min()) if len(sims) else 0.0,
            seconds={"knn_load": loaded - started, "knn_search": time.perf_counter() - loaded},
        )

    faiss.omp_set_num_threads(max(1, threads))
    projected = project(
        features, principal_basis(features, approximate.search_dims, approximate.pca_sample, rng)
    )
    sampled = np.zeros(len(features), dtype=bool)
    sampled[rng.choice(len(features), size=min(recall_sample, len(features)), replace=False)] = True
    found, exact = approximate_search(features, projected, k, approximate, sampled, owners)
    rows, cols, sims = merge_topk(*found, k)
    exact_rows, exact_cols, _ = merge_topk(*exact, k)
    in_sample = sampled[rows]
    hits = len(
        set(zip(exact_rows.tolist(), exact_cols.tolist()))
        & set(zip(rows[in_sample].tolist(), cols[in_sample].tolist()))
    )
    recall = hits / max(1, len(exact_rows))
    queries = int(sampled.sum())
    log.info(
        f"kNN approximate-ivf: recall@{k} = {recall:.4f} against exact search on "
        f"{queries} sampled SOPs"
    )
    return Neighbours(
        rows,
        cols,
        sims,
        backend="approximate-ivf",
        recall=recall,
        smallest=float(sims.min()) if len(sims) else 0.0,
        recall_queries=queries,
        seconds={"knn_load": loaded - started, "knn_search": time.perf_counter() - loaded},
    )
