"""Multiway cut on tiny graphs (<= 8 SOPs, 3 terminals) against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from liid_cli.graph.build import (
    SopGraph,
    argmax_labels,
    authors_terminals,
    build_graph,
    component_energies,
    edgeless_graph,
    prior_corrected,
)
from liid_cli.graph.expansion import alpha_expansion
from liid_cli.graph.lp import build_program, lagrangian_bound, solve_glop, solve_pdlp, subproblem
from liid_cli.graph.multiway import SolverSettings, solve_cut

SETTINGS = SolverSettings(
    solver="expansion",
    capacity_scale=1e6,
    max_cycles=20,
    lp_max_sops=100,
    glop_max_sops=100,
    lp_batch_sops=50,
    lp_time_limit=30.0,
    pdlp_tolerance=1e-9,
)


def brute_force(graph: SopGraph) -> float:
    """The minimum energy over every allowed labelling, all at once."""
    choices = [np.flatnonzero(row) for row in graph.allowed]
    labellings = np.array(list(itertools.product(*choices)))
    unary = graph.unary[np.arange(graph.num_sops), labellings].sum(axis=1)
    cut = (labellings[:, graph.tails] != labellings[:, graph.heads]) @ graph.weights
    return float((unary + cut).min())


def multiway_cut_cost(probs: np.ndarray, graph: SopGraph, labels: np.ndarray) -> float:
    """Weight of the edges a multiway cut removes when SOP u stays with terminal labels[u]."""
    cost = 0.0
    for u, row in enumerate(probs):  # every SOP-terminal edge to another terminal is cut
        cost += sum(p for k, p in enumerate(row) if k != labels[u])
    for t, h, w in zip(graph.tails, graph.heads, graph.weights):
        cost += w * (labels[t] != labels[h])
    return cost


def dump_like_graph(seed: int, masked: bool) -> tuple[SopGraph, np.ndarray]:
    """Background always allowed, the classes sometimes masked, probabilities of a softmax."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(3, 0.7), size=8)
    allowed = np.ones_like(probs, dtype=bool)
    if masked:
        allowed[:, 1:] = rng.random((8, 2)) < 0.7
        probs = probs * allowed
    pairs = np.array(list(itertools.combinations(range(8), 2)))
    chosen = pairs[rng.random(len(pairs)) < 0.4]
    similarity = rng.uniform(0.05, 1.0, size=len(chosen))
    return build_graph(probs, allowed, chosen[:, 0], chosen[:, 1], similarity, delta=1.0), probs


def frustrated_graph(seed: int) -> tuple[SopGraph, np.ndarray]:
    """Each SOP may take two of the three labels, with strong edges: fractional LPs and expansion
    local minima happen here."""
    rng = np.random.default_rng(seed)
    allowed = np.ones((8, 3), dtype=bool)
    allowed[np.arange(8), rng.integers(3, size=8)] = False
    probs = rng.dirichlet(np.full(3, 2.0), size=8) * allowed
    pairs = np.array(list(itertools.combinations(range(8), 2)))
    chosen = pairs[rng.random(len(pairs)) < 0.5]
    similarity = rng.uniform(0.2, 1.0, size=len(chosen))
    return build_graph(probs, allowed, chosen[:, 0], chosen[:, 1], similarity, delta=1.0), probs


def check_against_brute_force(graph: SopGraph, probs: np.ndarray) -> tuple[float, float, float]:
    optimum = brute_force(graph)
    result = solve_cut(graph, SETTINGS, workers=1)
    energy = float(result.component_energy.sum())
    assert energy == pytest.approx(optimum, abs=1e-9)
    assert energy == pytest.approx(component_energies(graph, result.labels).sum(), abs=1e-12)
    assert energy == pytest.approx(multiway_cut_cost(probs, graph, result.labels), abs=1e-9)
    assert graph.allowed[np.arange(graph.num_sops), result.labels].all()
    assert not np.isnan(result.component_lower_bound).any()
    assert np.all(result.component_lower_bound <= result.component_energy + 1e-7)
    expansion = alpha_expansion(graph, argmax_labels(graph), 1e6, 20)
    return (
        optimum,
        float(component_energies(graph, expansion.labels).sum()),
        float(result.component_lower_bound.sum()),
    )


@pytest.mark.parametrize("masked", [False, True])
def test_dump_like_graphs_reach_the_optimum(masked: bool) -> None:
    for seed in range(20):
        check_against_brute_force(*dump_like_graph(seed, masked))


def test_frustrated_graphs_reach_the_optimum_with_bounds_below_it() -> None:
    fractional = expansion_stuck = 0
    for seed in range(60):
        optimum, expansion_energy, bound = check_against_brute_force(*frustrated_graph(seed))
        fractional += bound < optimum - 1e-6
        expansion_stuck += expansion_energy > optimum + 1e-9
    # Both branches are exercised: LPs with a gap, and expansion local minima repaired by an
    # integral LP solution.
    assert fractional >= 3 and expansion_stuck >= 1


def test_energy_is_the_multiway_cut_cost_by_hand() -> None:
    # Two SOPs, labels {0, 1, 2}; edge weight delta * |cos| = 2 * 0.5 = 1.
    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    graph = build_graph(
        probs, np.ones((2, 3), bool), np.array([0]), np.array([1]), np.array([0.5]), 2.0
    )
    assert graph.weights.tolist() == [1.0]
    # labels (1, 0): terminal edges cut 0.2 + 0.1 and 0.4 + 0.1, plus the SOP edge 1.0 = 1.8
    assert component_energies(graph, np.array([1, 0])).sum() == pytest.approx(1.8)
    # the optimum keeps both on 1: (0.2 + 0.1) + (0.5 + 0.1) = 0.9 (both on 0: 0.8 + 0.5 = 1.3)
    result = solve_cut(graph, SETTINGS, workers=1)
    assert result.labels.tolist() == [1, 1]
    assert result.component_energy.sum() == pytest.approx(0.9)
    assert result.component_lower_bound[0] == pytest.approx(0.9, abs=1e-7)


def test_fractional_triangle_bound_by_hand() -> None:
    # SOPs may take {0,1}, {1,2}, {0,2} with p = 1/2 each, all linked with weight 1. The LP puts
    # each SOP half on both labels: 3 * 0.5 unary + 3 * 0.5 cut = 3.0. Any labelling cuts two
    # edges: 1.5 + 2 = 3.5.
    allowed = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=bool)
    probs = 0.5 * allowed
    graph = build_graph(probs, allowed, np.array([0, 1, 0]), np.array([1, 2, 2]), np.ones(3), 1.0)
    assert brute_force(graph) == pytest.approx(3.5)
    problem = subproblem(graph, np.array([0]))
    glop = solve_glop(problem, time_limit=10.0)
    pdlp = solve_pdlp(problem, time_limit=10.0, tolerance=1e-9, threads=1)
    assert glop.lower_bound[0] == pytest.approx(3.0, abs=1e-9)
    assert not glop.integral[0]
    assert pdlp.lower_bound[0] == pytest.approx(3.0, abs=1e-5)
    assert pdlp.lower_bound[0] <= 3.0 + 1e-9
    result = solve_cut(graph, SETTINGS, workers=1)
    assert result.component_energy[0] == pytest.approx(3.5)
    assert result.component_gap[0] == pytest.approx(0.5 / 3.0, rel=1e-6)


def test_argmax_solver_ignores_edges() -> None:
    graph, probs = dump_like_graph(3, masked=False)
    settings = SolverSettings(**{**SETTINGS.__dict__, "solver": "argmax", "lp_max_sops": 0})
    result = solve_cut(graph, settings, workers=1)
    assert result.labels.tolist() == probs.argmax(axis=1).tolist()
    assert np.isnan(result.component_lower_bound).all()


def test_components_solved_in_a_pool_match_brute_force() -> None:
    parts = [frustrated_graph(seed) for seed in (11, 17, 20, 28)]
    offsets = np.cumsum([0] + [graph.num_sops for graph, _ in parts])
    probs = np.concatenate([p for _, p in parts])
    tails = np.concatenate([graph.tails + o for (graph, _), o in zip(parts, offsets)])
    heads = np.concatenate([graph.heads + o for (graph, _), o in zip(parts, offsets)])
    weights = np.concatenate([graph.weights for graph, _ in parts])
    allowed = np.concatenate([graph.allowed for graph, _ in parts])
    graph = build_graph(probs, allowed, tails, heads, weights, delta=1.0)
    settings = SolverSettings(**{**SETTINGS.__dict__, "lp_batch_sops": 8})
    pooled = solve_cut(graph, settings, workers=2)
    single = solve_cut(graph, settings, workers=1)
    assert np.allclose(pooled.component_lower_bound, single.component_lower_bound, atol=1e-7)
    optimum = sum(brute_force(part) for part, _ in parts)
    assert pooled.component_energy.sum() == pytest.approx(optimum, abs=1e-9)


def test_lagrangian_bound_is_valid_for_any_dual_vector() -> None:
    graph, _ = frustrated_graph(20)
    problem = subproblem(graph, np.arange(graph.num_components))
    program = build_program(problem)
    optimum = brute_force(graph)
    glop = solve_glop(problem, time_limit=10.0)
    rng = np.random.default_rng(0)
    for scale in (0.0, 0.1, 1.0, 10.0):
        duals = rng.normal(scale=scale, size=program.matrix.shape[0])
        bound = lagrangian_bound(program, duals, problem.num_components).sum()
        assert bound <= glop.lower_bound.sum() + 1e-9 <= optimum + 1e-9


def test_authors_terminals_by_hand() -> None:
    """Scores minus their global minimum, foreground only; a confident SOP links to its top class
    alone, the others to their 4 best classes above 1e-4; no background terminal."""
    probs = np.array(
        [
            [0.02, 0.95, 0.02, 0.01, 0.0, 0.0, 0.0],  # confident: class 1 alone
            [0.30, 0.25, 0.20, 0.10, 0.08, 0.05, 0.02],  # top 4 of 6 foreground classes
            [0.90, 0.04, 0.03, 0.03, 0.0, 0.0, 0.0],  # only class 1 allowed (label masking)
        ]
    )
    allowed = np.ones_like(probs, dtype=bool)
    allowed[2, 2:] = False
    weights, may_take = authors_terminals(probs, allowed, confident=0.9, top=4, smallest=1e-4)
    expected = np.zeros_like(probs)  # the smallest allowed foreground score is 0 here
    expected[0, 1] = 0.95
    expected[1, 1:5] = [0.25, 0.20, 0.10, 0.08]
    expected[2, 1] = 0.04
    assert np.allclose(weights, expected)
    assert not may_take[:, 0].any() and may_take[:, 1].all() and not may_take[2, 2:].any()
    # The no-graph labels: background is never taken, even where its p is largest.
    assert argmax_labels(edgeless_graph(weights, may_take)).tolist() == [1, 1, 1]


def test_authors_terminals_subtract_the_global_minimum_and_keep_background_for_unlabelled() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.6, 0.25, 0.15], [0.7, 0.2, 0.1]])
    allowed = np.ones_like(probs, dtype=bool)
    allowed[2, 1:] = False  # an image without labelled classes
    weights, may_take = authors_terminals(probs, allowed, confident=0.9, top=1, smallest=1e-4)
    assert np.allclose(weights[:2], [[0.0, 0.3 - 0.15, 0.0], [0.0, 0.25 - 0.15, 0.0]])
    assert may_take[2].tolist() == [True, False, False] and weights[2, 0] == 1.0
    assert argmax_labels(edgeless_graph(weights, may_take)).tolist() == [1, 1, 0]


def test_prior_correction_by_hand_hands_a_close_call_to_the_rarer_class() -> None:
    # 4 images: class 1 tagged on all of them, class 2 on one, class 3 on none (prior clipped to 1/4).
    image_labels = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool)
    probs = np.array([[0.1, 0.6, 0.3, 0.0], [0.2, 0.3, 0.0, 0.5]], dtype=np.float32)
    assert prior_corrected(probs, image_labels, 0.0) is probs
    # power 1: [0.1, 0.6, 0.3 / 0.25, 0] / 1.9 and [0.2, 0.3, 0, 0.5 / 0.25] / 2.5
    expected = np.array([[0.1, 0.6, 1.2, 0.0], [0.2, 0.3, 0.0, 2.0]]) / np.array([[1.9], [2.5]])
    corrected = prior_corrected(probs, image_labels, 1.0)
    assert corrected.dtype == np.float32 and np.allclose(corrected, expected)
    assert corrected[0].argmax() == 2 and probs[0].argmax() == 1
    # power 0.5 halves the lean: 0.3 / 0.5 = 0.6 against the frequent class's 0.6, a tie.
    half = prior_corrected(probs, image_labels, 0.5)
    assert half[0, 1] == pytest.approx(half[0, 2])
