"""The approximate kNN backend: a faiss IVF index on the features' top principal directions
(fitted on a sample) proposes candidates per SOP, which are re-ranked by their exact
full-dimension cosine. The SOPs are reordered by IVF list first, so a query's candidates sit close
together in memory and the re-ranking gathers stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import torch

from liid_cli.graph.knn_exact import Triples, exact_topk, triples


@dataclass(frozen=True)
class ApproximateSettings:
    search_dims: int
    candidates: int
    ivf_lists_per_sqrt: float  # IVF lists = this * sqrt(number of SOPs)
    ivf_probe: int
    ivf_train_iterations: int
    pca_sample: int


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


def approximate_search(
    features: torch.Tensor,
    projected: np.ndarray,
    k: int,
    settings: ApproximateSettings,
    sampled: np.ndarray,
    owners: np.ndarray,
) -> tuple[Triples, Triples]:
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
    found = triples(members, members, *_rerank(index, candidates, k, owner))
    chosen = np.flatnonzero(sampled[members])
    vectors = torch.from_numpy(_stored_vectors(index))
    key_owner = torch.from_numpy(owner)
    exact = triples(
        members[chosen],
        members,
        *exact_topk(vectors, vectors[torch.from_numpy(chosen)], k, key_owner[chosen], key_owner),
    )
    return found, exact


