"""Cosine top-k neighbours of every SOP among all SOPs of the data set.

The features are streamed from HDF5 once, normalised and kept as float16 (N x D x 2 bytes), then
searched as a float32 (float16 on a GPU) matrix:
- `exact`: blocked matmul + running top-k with torch (GPU when there is one; memory bounded by the
  block size on CPU, work N x N x D).
- `approximate`: a faiss IVF index on the features' top principal directions (`search_dims`, fitted
  on a sample) proposes `candidates` per SOP, which are re-ranked by their exact full-dimension
  cosine. The SOPs are reordered by IVF list first, so a query's candidates sit close together in
  memory and the re-ranking gathers stay in cache.
A random sample of queries is also searched exactly, so every run prints the recall@k of the
approximate backend against exact search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np
import torch

from liid_cli.graph.dump import DumpData, FeatureStream
from liid_cli.log import log

QUERY_BLOCK = 1024


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


@dataclass(frozen=True)
class ApproximateSettings:
    search_dims: int
    candidates: int
    ivf_lists_per_sqrt: float  # IVF lists = this * sqrt(number of SOPs)
    ivf_probe: int
    ivf_train_iterations: int
    pca_sample: int


def keep_class_sharing(neighbours: Neighbours, dump: DumpData) -> Neighbours:
    """Drop the edges between SOPs of images that share no labelled class (the authors' code:
    after the search over all SOPs, so an SOP may keep fewer than k edges)."""
    labels = dump.image_labels[:, 1:].astype(bool)
    shared = (labels[dump.sop_image[neighbours.rows]] & labels[dump.sop_image[neighbours.cols]]).any(axis=1)
    return replace(
        neighbours,
        rows=neighbours.rows[shared],
        cols=neighbours.cols[shared],
        similarity=neighbours.similarity[shared],
    )


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


def merge_topk(
    rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the k most similar distinct columns among candidate (row, col, sim) triples."""
    order = np.lexsort((-sims, cols, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, sims = rows[first], cols[first], sims[first]
    order = np.lexsort((-sims, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    starts = (
        np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
    )
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    keep = rank < k
    return rows[keep], cols[keep], sims[keep]


def normalised_rows(block: torch.Tensor) -> torch.Tensor:
    values = block.float()
    return values / values.norm(dim=1, keepdim=True).clamp_min(1e-12)


def load_normalised(stream: FeatureStream, spill: Path | None = None) -> torch.Tensor:
    """All features, L2-normalised, as one float16 (N, D) tensor, streamed from HDF5 in chunks. With
    `spill`, the tensor is a memory-mapped file there, so data sets larger than memory work (the
    page cache keeps what fits)."""
    shape = (stream.dump.num_sops, stream.dump.feature_dim)
    if spill is None:
        array = np.empty(shape, dtype=np.float16)
    else:
        array = np.lib.format.open_memmap(spill, mode="w+", dtype=np.float16, shape=shape)
    for start, block in stream.chunks():
        array[start : start + len(block)] = normalised_rows(torch.from_numpy(block)).half().numpy()
    return torch.from_numpy(array)


def exact_topk(
    vectors: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    query_owner: torch.Tensor,
    owner: torch.Tensor,
    block_bytes: int = 128 << 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(len(queries), k) best similarities and positions in `vectors`, never a vector with the
    query's owner (the SOP itself, or its image); -2 where there are fewer than k others.
    Similarities are computed in blocks of about `block_bytes`."""
    side = max(64, block_bytes // (4 * max(1, len(vectors))))
    sims_out, ids_out = [], []
    count = min(k, len(vectors))
    for start in range(0, len(queries), side):
        sims = queries[start : start + side] @ vectors.T
        sims[query_owner[start : start + side, None] == owner[None, :]] = -2.0
        best = sims.float().topk(count, dim=1)
        sims_out.append(best.values)
        ids_out.append(best.indices)
    return torch.cat(sims_out), torch.cat(ids_out)


def _triples(
    query_ids: np.ndarray, key_ids: np.ndarray, sims: torch.Tensor, positions: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, key, similarity) triples from per-query positions in `key_ids` (-1 = none)."""
    positions_np = positions.cpu().numpy()
    sims_np = sims.cpu().numpy()
    valid = (positions_np >= 0) & (sims_np > -1.5)
    rows = np.repeat(query_ids, positions_np.shape[1]).reshape(positions_np.shape)[valid]
    return rows, key_ids[positions_np[valid]], sims_np[valid]


def principal_basis(
    vectors: torch.Tensor, dims: int, sample: int, rng: np.random.Generator
) -> torch.Tensor:
    """(D, dims) top right-singular vectors of a random sample of normalised features (uncentred,
    so projected inner products approximate cosines), by randomised subspace iteration."""
    rows = torch.from_numpy(
        np.sort(rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False))
    )
    values = vectors[rows].float()
    dims = min(dims, *values.shape)
    width = min(dims + 16, *values.shape)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    range_basis = values @ torch.randn(values.shape[1], width, generator=generator)
    for _ in range(2):
        range_basis, _ = torch.linalg.qr(range_basis)
        range_basis = values @ (values.T @ range_basis)
    range_basis, _ = torch.linalg.qr(range_basis)
    _, _, right = torch.linalg.svd(range_basis.T @ values, full_matrices=False)
    return right[:dims].T.contiguous()


def project(features: torch.Tensor, basis: torch.Tensor, chunk: int = 16384) -> np.ndarray:
    """(N, dims) float32 projections of the float16 features on `basis`."""
    out = np.empty((len(features), basis.shape[1]), dtype=np.float32)
    for start in range(0, len(features), chunk):
        out[start : start + chunk] = (features[start : start + chunk].float() @ basis).numpy()
    return out


def _ivf_candidates(
    projected: np.ndarray, count: int, settings: ApproximateSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate positions (n, count) from a faiss IVF index, and each vector's IVF list."""
    n, dim = projected.shape
    lists = int(max(1, min(settings.ivf_lists_per_sqrt * np.sqrt(n), n // 40)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = settings.ivf_train_iterations
    index.cp.max_points_per_centroid = 32
    index.train(projected)
    index.add(projected)
    index.nprobe = min(settings.ivf_probe, lists)
    _, candidates = index.search(projected, min(count, n))
    _, assignment = quantizer.search(projected, 1)
    return candidates, assignment[:, 0]


def _flat_index(
    features: torch.Tensor, members: np.ndarray, chunk: int = 8192
) -> faiss.IndexFlatIP:
    """The members' normalised features as float32 in a faiss flat index (one copy, in chunks)."""
    index = faiss.IndexFlatIP(features.shape[1])
    for start in range(0, len(members), chunk):
        index.add(features[torch.from_numpy(members[start : start + chunk])].float().numpy())
    return index


def _stored_vectors(index: faiss.IndexFlatIP) -> np.ndarray:
    """A view (no copy) of the vectors inside a flat index."""
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def _rerank(
    index: faiss.IndexFlatIP, candidates: np.ndarray, k: int, owner: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine of each row's candidate positions (-1 = none) by faiss; best k, none with the
    row's owner."""
    n = index.ntotal
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    sims = np.empty(candidates.shape, dtype=np.float32)
    index.compute_distance_subset(
        n,
        faiss.swig_ptr(_stored_vectors(index)),
        candidates.shape[1],
        faiss.swig_ptr(sims),
        faiss.swig_ptr(candidates),
    )
    sims[(candidates < 0) | (owner[np.maximum(candidates, 0)] == owner[:, None])] = -2.0
    best = torch.from_numpy(sims).topk(min(k, candidates.shape[1]), dim=1)
    ids = torch.from_numpy(candidates).gather(1, best.indices)
    return best.values, torch.where(best.values > -1.5, ids, -1)


def _approximate_search(
    features: torch.Tensor,
    projected: np.ndarray,
    k: int,
    settings: ApproximateSettings,
    sampled: np.ndarray,
    owners: np.ndarray,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """IVF candidates, reordered by list for cache-friendly exact re-ranking; the sampled queries
    are also searched exactly. (found, exact-on-sample) (query, neighbour, similarity) triples."""
    members = np.arange(len(features))
    # The owner's own SOPs come back as candidates too, so ask for as many more.
    extra = int(np.bincount(owners).max()) if len(owners) else 1
    candidates, lists = _ivf_candidates(projected[members], settings.candidates + extra, settings)
    order = np.argsort(lists, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    members = members[order]
    candidates = np.where(candidates >= 0, position[np.maximum(candidates, 0)], -1)[order]
    index = _flat_index(features, members)
    owner = owners[members]
    found = _triples(members, members, *_rerank(index, candidates, k, owner))
    chosen = np.flatnonzero(sampled[members])
    vectors = torch.from_numpy(_stored_vectors(index))
    key_owner = torch.from_numpy(owner)
    exact = _triples(
        members[chosen],
        members,
        *exact_topk(vectors, vectors[torch.from_numpy(chosen)], k, key_owner[chosen], key_owner),
    )
    return found, exact


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
        found = _triples(members, members, *exact_topk(vectors, vectors, k, owner, owner))
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
    found, exact = _approximate_search(features, projected, k, approximate, sampled, owners)
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
