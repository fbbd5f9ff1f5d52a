"""Exact cosine top-k by blocked matmul (torch; a GPU when there is one), and the helpers both
kNN backends share: normalised float16 features streamed from HDF5, (query, neighbour,
similarity) triples and their merge to top-k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from liid_cli.graph.dump import FeatureStream

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


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


def triples(
    query_ids: np.ndarray, key_ids: np.ndarray, sims: torch.Tensor, positions: torch.Tensor
) -> Triples:
    """(query, key, similarity) triples from per-query positions in `key_ids` (-1 = none)."""
    positions_np = positions.cpu().numpy()
    sims_np = sims.cpu().numpy()
    valid = (positions_np >= 0) & (sims_np > -1.5)
    rows = np.repeat(query_ids, positions_np.shape[1]).reshape(positions_np.shape)[valid]
    return rows, key_ids[positions_np[valid]], sims_np[valid]


