"""Cosine top-k neighbours of every SOP, within search groups (the SOPs of images sharing a class).

Two backends:
- `exact`: blocked cosine top-k with torch over the full features (GPU when there is one; on CPU
  memory stays bounded by the block sizes, but the work is N x group size x D).
- `approximate`: features streamed from HDF5 and projected on their top principal directions
  (uncentred, so inner products approximate cosines); a faiss index (HNSW or IVF) per group on the
  first `search_dims` gives candidates, re-ranked by the inner product in `rerank_dims`. Its
  recall@k against exact search is measured on a random sample of queries on every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from liid_cli.graph.dump import DumpData, FeatureStream
from liid_cli.log import log, track

SMALL_GROUP = 4096  # groups up to this size are searched exactly in the projected space


@dataclass(frozen=True)
class Neighbours:
    """Directed kNN edges: `rows[i]`'s neighbour `cols[i]` with cosine `similarity[i]`."""

    rows: np.ndarray
    cols: np.ndarray
    similarity: np.ndarray
    backend: str
    recall: float | None = None  # recall@k of these edges against exact search, on a sample
    recall_queries: int = 0
    similarity_error: float | None = None  # mean |approximate - exact| cosine of the found edges
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ApproximateSettings:
    method: str  # "hnsw" or "ivf"
    search_dims: int
    rerank_dims: int
    candidates: int
    hnsw_m: int
    hnsw_ef_search: int
    ivf_probe: int
    pca_sample: int


def search_groups(dump: DumpData, share_class: bool) -> list[np.ndarray]:
    """SOP ids per search group: one group per class (its images' SOPs), or one group of all."""
    if not share_class:
        return [np.arange(dump.num_sops)]
    sop_labels = dump.image_labels[dump.sop_image, 1:]
    groups = [np.flatnonzero(sop_labels[:, c]) for c in range(sop_labels.shape[1])]
    return [g for g in groups if len(g) > 1]


def merge_topk(rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the k most similar distinct columns among candidate (row, col, sim) triples."""
    order = np.lexsort((-sims, cols, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols, sims = rows[first], cols[first], sims[first]
    order = np.lexsort((-sims, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    keep = rank < k
    return rows[keep], cols[keep], sims[keep]


def _block_topk(queries: torch.Tensor, query_ids: torch.Tensor, keys: torch.Tensor,
                key_ids: torch.Tensor, k: int, key_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (similarity, key id) of each query over the keys, excluding itself."""
    best_sims = torch.full((len(queries), 0), -2.0, device=queries.device)
    best_ids = torch.zeros((len(queries), 0), dtype=torch.long, device=queries.device)
    for start in range(0, len(keys), key_block):
        block_ids = key_ids[start:start + key_block]
        sims = (queries @ keys[start:start + key_block].T).float()
        sims[query_ids[:, None] == block_ids[None, :]] = -2.0
        sims = torch.cat([best_sims, sims], dim=1)
        ids = torch.cat([best_ids, block_ids[None, :].expand(len(queries), -1)], dim=1)
        best_sims, position = sims.topk(min(k, sims.shape[1]), dim=1)
        best_ids = ids.gather(1, position)
    return best_sims, best_ids


def normalised_rows(block: np.ndarray) -> np.ndarray:
    values = block.astype(np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, 1e-12)


def exact_knn(stream: FeatureStream, groups: list[np.ndarray], k: int, device: str,
              keep_rows: np.ndarray, block_bytes: int = 256 << 20) -> tuple[Neighbours, np.ndarray]:
    """Exact cosine top-k within each group, in blocks of about `block_bytes` of similarities; also
    the normalised features of the sorted `keep_rows`."""
    started = time.perf_counter()
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    vectors = torch.empty((stream.dump.num_sops, stream.dump.feature_dim), dtype=dtype, device=device)
    for start, block in stream.chunks():
        vectors[start:start + len(block)] = torch.from_numpy(normalised_rows(block)).to(device, dtype)
    loaded = time.perf_counter()
    found_rows, found_cols, found_sims = [], [], []
    side = max(256, int((block_bytes // 4) ** 0.5))
    for members in track(groups, "exact kNN per group"):
        ids = torch.from_numpy(members).to(device)
        group = vectors[ids]
        for start in range(0, len(ids), side):
            query_ids = ids[start:start + side]
            sims, cols = _block_topk(group[start:start + side], query_ids, group, ids, k, side)
            valid = sims > -1.5
            found_rows.append(query_ids[:, None].expand_as(cols)[valid].cpu().numpy())
            found_cols.append(cols[valid].cpu().numpy())
            found_sims.append(sims[valid].cpu().numpy())
    rows, cols, sims = merge_topk(*_concat(found_rows, found_cols, found_sims), k)
    kept = vectors[torch.from_numpy(keep_rows).to(device)].float().cpu().numpy()
    finished = time.perf_counter()
    found = Neighbours(rows, cols, sims, backend=f"exact-{device.split(':')[0]}",
                       seconds={"load": loaded - started, "search": finished - loaded})
    return found, kept


def _concat(rows: list[np.ndarray], cols: list[np.ndarray], sims: list[np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64),
            np.concatenate(sims).astype(np.float32))


def principal_basis(stream: FeatureStream, dims: int, sample: int, rng: np.random.Generator) -> np.ndarray:
    """(D, dims) top right-singular vectors of a sample of normalised features (uncentred)."""
    total = stream.dump.num_sops
    run = min(1024, total)
    count = max(1, min(sample // run, total // run))
    starts = rng.choice(total - run + 1, size=count, replace=False)
    values = torch.from_numpy(normalised_rows(stream.read_rows(starts, run)))
    dims = min(dims, *values.shape)
    _, _, v = torch.svd_lowrank(values, q=min(dims + 16, *values.shape), niter=3, M=None)
    return v[:, :dims].numpy().astype(np.float32)


def project_features(stream: FeatureStream, basis: np.ndarray, keep_rows: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(M, dims) float32 projections of the normalised features, streamed in chunks, and the
    full normalised features of the sorted `keep_rows`."""
    out = np.empty((stream.dump.num_sops, basis.shape[1]), dtype=np.float32)
    kept = np.empty((len(keep_rows), stream.dump.feature_dim), dtype=np.float32)
    for start, block in stream.chunks():
        normalised = normalised_rows(block)
        out[start:start + len(block)] = normalised @ basis
        lo, hi = np.searchsorted(keep_rows, [start, start + len(block)])
        kept[lo:hi] = normalised[keep_rows[lo:hi] - start]
    return out, kept


def _group_candidates(search: np.ndarray, members: np.ndarray, count: int,
                      settings: ApproximateSettings) -> tuple[np.ndarray, np.ndarray]:
    """(len(members), count) candidate global ids (-1 = none) and their projected scores."""
    import faiss

    vectors = np.ascontiguousarray(search[members])
    dim = vectors.shape[1]
    if len(members) <= SMALL_GROUP:
        index = faiss.IndexFlatIP(dim)
    elif settings.method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * settings.hnsw_m)
        index.hnsw.efSearch = max(settings.hnsw_ef_search, count)
    else:
        lists = int(min(4 * np.sqrt(len(members)), len(members) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(settings.ivf_probe, lists)
    index.add(vectors)
    scores, local = index.search(vectors, min(count, len(members)))
    ids = np.where(local >= 0, members[np.maximum(local, 0)], -1)
    return ids, scores


def approximate_knn(stream: FeatureStream, groups: list[np.ndarray], k: int, settings: ApproximateSettings,
                    keep_rows: np.ndarray, rng: np.random.Generator, threads: int
                    ) -> tuple[Neighbours, np.ndarray]:
    """Projected-space candidates per group from faiss, re-ranked in the wider projection."""
    import faiss

    faiss.omp_set_num_threads(max(1, threads))
    timer = {"start": time.perf_counter()}
    rerank_dims = min(settings.rerank_dims, stream.dump.feature_dim)
    basis = principal_basis(stream, rerank_dims, settings.pca_sample, rng)
    timer["basis"] = time.perf_counter()
    projected, kept = project_features(stream, basis, keep_rows)
    search = np.ascontiguousarray(projected[:, :settings.search_dims])
    timer["project"] = time.perf_counter()
    rows_found, cols_found = [], []
    for members in track(groups, f"approximate kNN ({settings.method}) per group"):
        ids, _ = _group_candidates(search, members, settings.candidates + 1, settings)
        queries = np.repeat(members, ids.shape[1])
        cols = ids.ravel()
        valid = (cols >= 0) & (cols != queries)
        rows_found.append(queries[valid])
        cols_found.append(cols[valid])
    rows, cols = np.concatenate(rows_found), np.concatenate(cols_found)
    timer["search"] = time.perf_counter()
    sims = np.empty(len(rows), dtype=np.float32)
    step = 1 << 18
    for start in range(0, len(rows), step):
        part = slice(start, start + step)
        sims[part] = np.einsum("ij,ij->i", projected[rows[part]], projected[cols[part]])
    rows, cols, sims = merge_topk(rows, cols, sims, k)
    timer["rerank"] = time.perf_counter()
    seconds = {name: timer[name] - timer[previous] for previous, name in
               zip(("start", "basis", "project", "search"), ("basis", "project", "search", "rerank"))}
    return Neighbours(rows, cols, sims, backend=f"approximate-{settings.method}", seconds=seconds), kept


def recall_queries(dump: DumpData, share_class: bool, sample: int, rng: np.random.Generator) -> np.ndarray:
    """A sorted random sample of SOPs that have someone to search (the recall sample)."""
    if share_class:
        candidates = np.flatnonzero(dump.image_labels[dump.sop_image, 1:].any(axis=1))
    else:
        candidates = np.arange(dump.num_sops)
    return np.sort(rng.choice(candidates, size=min(max(sample, 0), len(candidates)), replace=False))


def measure_recall(stream: FeatureStream, found: Neighbours, share_class: bool, k: int,
                   queries: np.ndarray, query_vectors: np.ndarray) -> Neighbours:
    """Recall@k of `found` against exact search for the sampled queries (one streamed pass), and
    the mean error of the similarities of the edges found."""
    if len(queries) == 0:
        return found
    started = time.perf_counter()
    dump = stream.dump
    query_labels = torch.from_numpy(dump.image_labels[dump.sop_image[queries], 1:].astype(np.float32))
    vectors = torch.from_numpy(query_vectors)
    query_ids = torch.from_numpy(queries)
    best_sims = torch.full((len(queries), 0), -2.0)
    best_ids = torch.zeros((len(queries), 0), dtype=torch.long)
    for start, block in stream.chunks():
        key_ids = torch.arange(start, start + len(block))
        sims = vectors @ torch.from_numpy(normalised_rows(block)).T
        sims[query_ids[:, None] == key_ids[None, :]] = -2.0
        if share_class:
            key_labels = dump.image_labels[dump.sop_image[start:start + len(block)], 1:].astype(np.float32)
            sims[(query_labels @ torch.from_numpy(key_labels).T) < 0.5] = -2.0
        sims = torch.cat([best_sims, sims], dim=1)
        ids = torch.cat([best_ids, key_ids[None, :].expand(len(queries), -1)], dim=1)
        best_sims, position = sims.topk(min(k, sims.shape[1]), dim=1)
        best_ids = ids.gather(1, position)
    exact = {(int(q), int(c)): float(s) for q, row_ids, row_sims in
             zip(queries, best_ids.numpy(), best_sims.numpy()) for c, s in zip(row_ids, row_sims) if s > -1.5}
    in_sample = np.isin(found.rows, queries)
    pairs = list(zip(found.rows[in_sample].tolist(), found.cols[in_sample].tolist()))
    recall = len(exact.keys() & set(pairs)) / max(1, len(exact))
    errors = [abs(s - exact[pair]) for pair, s in zip(pairs, found.similarity[in_sample].tolist())
              if pair in exact]
    log.info(f"kNN {found.backend}: recall@{k} = {recall:.4f} against exact search on "
             f"{len(queries)} sampled queries")
    return Neighbours(found.rows, found.cols, found.similarity, found.backend, recall=recall,
                      recall_queries=len(queries),
                      similarity_error=float(np.mean(errors)) if errors else None,
                      seconds=dict(found.seconds, recall=time.perf_counter() - started))
