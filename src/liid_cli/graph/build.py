"""The knowledge graph: SOP-terminal costs, symmetrised SOP-SOP edges, connected components, energy.

Energy of a labelling l (the cost of the equivalent multiway cut, terminal edges included):
  E(l) = sum_u sum_{k != l_u} p_u[k]  +  sum_{(u,v)} w_uv [l_u != l_v]
with w_uv = delta (|cos(f_u, f_v)| - floor): floor 0 is the paper's absolute weight; the smallest
kNN similarity of the data set makes it relative (the authors' code).
With unmasked softmax probabilities the unary term is 1 - p_u[l_u]; with label masking it differs
from that by a constant per SOP, so the minimisers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class SopGraph:
    """Undirected SOP-SOP edges (tails < heads) and the SOPs' unary costs."""

    unary: np.ndarray  # (M, L) float64: cost of giving SOP u label k
    allowed: np.ndarray  # (M, L) bool
    tails: np.ndarray  # (E,) int64
    heads: np.ndarray  # (E,) int64
    weights: np.ndarray  # (E,) float64
    component: np.ndarray  # (M,) int64, components numbered by decreasing size
    component_sizes: np.ndarray  # (C,) int64

    @property
    def num_sops(self) -> int:
        return len(self.unary)

    @property
    def num_components(self) -> int:
        return len(self.component_sizes)


def unary_costs(probs: np.ndarray) -> np.ndarray:
    """Cost of label k = the terminal edges cut = sum of p over the other labels."""
    probs = probs.astype(np.float64)
    return probs.sum(axis=1, keepdims=True) - probs


# The authors' released cut: an SOP whose best class scores this much links to it alone, else to its
# AUTHORS_TOP best classes scoring above AUTHORS_SMALLEST.
AUTHORS_CONFIDENT = 0.9
AUTHORS_TOP = 4
AUTHORS_SMALLEST = 1e-4


def prior_corrected(probs: np.ndarray, image_labels: np.ndarray, power: float) -> np.ndarray:
    """p[k] / prior[k]^power, renormalised per SOP (logit adjustment): prior[k] is the share of
    the data set's images tagged with class k, background's 1. A network trained on image tags
    leans toward the frequent classes; this takes the lean back out of its probabilities."""
    if power == 0.0:
        return probs
    prior = image_labels.mean(axis=0).clip(1.0 / max(len(image_labels), 1), 1.0)
    prior[0] = 1.0
    corrected = probs.astype(np.float64) / prior[None] ** power
    return (corrected / corrected.sum(axis=1, keepdims=True).clip(1e-12)).astype(probs.dtype)


def terminal_weights(
    probs: np.ndarray, allowed: np.ndarray, scheme: Literal["probabilities", "authors"]
) -> tuple[np.ndarray, np.ndarray]:
    """SOP-terminal weights and the labels each SOP may take: `probabilities` (the paper: every
    label's p, background included) or `authors` (`authors_terminals`)."""
    if scheme == "probabilities":
        return probs, allowed
    return authors_terminals(probs, allowed, AUTHORS_CONFIDENT, AUTHORS_TOP, AUTHORS_SMALLEST)


def authors_terminals(
    probs: np.ndarray, allowed: np.ndarray, confident: float, top: int, smallest: float
) -> tuple[np.ndarray, np.ndarray]:
    """Terminal weights and allowed labels of the authors' released cut: foreground scores minus
    their global minimum, an SOP linked to its top class alone when that score reaches `confident`,
    else to its `top` best classes scoring above `smallest`; no background terminal (an SOP of an
    image without labelled classes keeps background)."""
    fg_allowed = allowed.copy()
    fg_allowed[:, 0] = False
    scores = np.where(fg_allowed, probs, 0.0).astype(np.float64)
    if fg_allowed.any():
        scores = np.where(fg_allowed, scores - scores[fg_allowed].min(), 0.0)
    order = np.argsort(-scores, axis=1, kind="stable")
    best = scores.max(axis=1, keepdims=True)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(scores.shape[1])[None, :], axis=1)
    kept = np.where(best >= confident, rank < 1, rank < top) & (scores > smallest)
    weights = np.where(kept, scores, 0.0)
    no_class = ~fg_allowed.any(axis=1)
    fg_allowed[no_class, 0] = True
    weights[no_class, 0] = 1.0
    return weights, fg_allowed


def build_graph(
    probs: np.ndarray,
    allowed: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    similarity: np.ndarray,
    delta: float,
    floor: float = 0.0,
) -> SopGraph:
    """Symmetrise directed kNN edges (an edge found from both ends keeps the larger weight)."""
    num_sops = len(probs)
    tails, heads = np.minimum(rows, cols), np.maximum(rows, cols)
    keep = tails != heads
    weights = delta * np.maximum(np.abs(similarity[keep].astype(np.float64)) - floor, 0.0)
    tails, heads = tails[keep], heads[keep]
    order = np.lexsort((-weights, heads, tails))
    tails, heads, weights = tails[order], heads[order], weights[order]
    first = (
        np.r_[True, (tails[1:] != tails[:-1]) | (heads[1:] != heads[:-1])]
        if len(tails)
        else np.zeros(0, bool)
    )
    tails, heads, weights = tails[first], heads[first], weights[first]
    adjacency = coo_matrix((np.ones(len(tails)), (tails, heads)), shape=(num_sops, num_sops))
    _, raw = connected_components(adjacency, directed=False)
    sizes = np.bincount(raw)
    rank = np.empty(len(sizes), dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    component = rank[raw]
    return SopGraph(
        unary=unary_costs(probs),
        allowed=allowed,
        tails=tails,
        heads=heads,
        weights=weights,
        component=component,
        component_sizes=np.bincount(component, minlength=len(sizes)),
    )


def edgeless_graph(weights: np.ndarray, allowed: np.ndarray) -> SopGraph:
    """The graph without SOP-SOP edges (the no-graph ablation)."""
    empty = np.zeros(0, dtype=np.int64)
    return build_graph(weights, allowed, empty, empty, np.zeros(0, np.float32), delta=0.0)


def component_energies(graph: SopGraph, labels: np.ndarray) -> np.ndarray:
    """(C,) energy of `labels` on each component."""
    unary = graph.unary[np.arange(graph.num_sops), labels]
    cut = graph.weights * (labels[graph.tails] != labels[graph.heads])
    return np.bincount(
        graph.component, weights=unary, minlength=graph.num_components
    ) + np.bincount(graph.component[graph.tails], weights=cut, minlength=graph.num_components)


def argmax_labels(graph: SopGraph) -> np.ndarray:
    """The labelling that ignores the SOP-SOP edges: each SOP's cheapest allowed label."""
    return np.where(graph.allowed, graph.unary, np.inf).argmin(axis=1)
