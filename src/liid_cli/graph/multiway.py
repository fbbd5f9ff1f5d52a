"""The multiway cut of the whole graph: alpha-expansion, then the LP certificate per component.

Components share only terminals, so the cut of the graph is the union of the components' cuts and
every figure (energy, lower bound, gap) is kept per component. Singleton components are solved in
closed form (their LP is integral: the cheapest allowed label); other components up to
`lp_max_sops` SOPs get the CKR LP: small ones batched into block-diagonal GLOP problems, larger ones
PDLP warm-started from the expansion labelling, in a process pool when there are workers.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from liid_cli.graph.build import SopGraph, argmax_labels, component_energies
from liid_cli.graph.expansion import alpha_expansion
from liid_cli.graph.lp import LpOutcome, LpSubproblem, solve_glop, solve_pdlp, subproblem
from liid_cli.log import log, track


@dataclass(frozen=True)
class SolverSettings:
    solver: str  # "expansion" or "argmax"
    capacity_scale: float
    max_cycles: int
    lp_max_sops: int  # 0 turns the certificate off
    glop_max_sops: int
    lp_batch_sops: int
    lp_time_limit: float
    pdlp_tolerance: float


@dataclass(frozen=True)
class CutResult:
    labels: np.ndarray
    component_energy: np.ndarray
    component_lower_bound: np.ndarray  # NaN where not computed
    component_gap: np.ndarray  # (energy - bound) / bound, NaN where not computed
    lp_integral_components: int  # components whose labelling came from an integral LP solution
    status: dict[str, int]
    seconds: dict[str, float]
    expansion_cycles: int = 0
    expansion_moves: int = 0


@dataclass(frozen=True)
class _LpJob:
    components: np.ndarray
    problem: LpSubproblem
    solver: str
    start_labels: np.ndarray | None


def _run_job(job: _LpJob, settings: SolverSettings, threads: int) -> LpOutcome:
    if job.solver == "glop":
        return solve_glop(job.problem, settings.lp_time_limit)
    return solve_pdlp(
        job.problem, settings.lp_time_limit, settings.pdlp_tolerance, threads, job.start_labels
    )


def _lp_jobs(
    graph: SopGraph, labels: np.ndarray, settings: SolverSettings, open_components: np.ndarray
) -> list[_LpJob]:
    sizes = graph.component_sizes
    chosen = np.flatnonzero(open_components & (sizes <= settings.lp_max_sops))
    jobs = []
    small = chosen[sizes[chosen] <= settings.glop_max_sops]
    batch: list[int] = []
    batch_sops = 0
    for component in small[::-1]:
        batch.append(int(component))
        batch_sops += int(sizes[component])
        if batch_sops >= settings.lp_batch_sops:
            jobs.append(np.array(batch))
            batch, batch_sops = [], 0
    if batch:
        jobs.append(np.array(batch))
    result = []
    for components in [c[None] for c in chosen[sizes[chosen] > settings.glop_max_sops]] + jobs:
        problem = subproblem(graph, components)
        solver = "glop" if sizes[components].max() <= settings.glop_max_sops else "pdlp"
        result.append(
            _LpJob(components, problem, solver, labels[problem.nodes] if solver == "pdlp" else None)
        )
    return result


def certify(
    graph: SopGraph, labels: np.ndarray, settings: SolverSettings, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, Counter[str]]:
    """LP bounds per component; labels improved where the LP solution is integral and cheaper."""
    labels = labels.copy()
    bound = np.full(graph.num_components, np.nan)
    status: Counter[str] = Counter()
    if settings.lp_max_sops < 1:
        return labels, bound, component_energies(graph, labels), 0, status
    # Every SOP at its cheapest label is a lower bound of the LP too; where the labelling reaches
    # it (all singletons, and components whose SOPs agree with their neighbours and their own
    # argmax) it is optimal and the LP would return the same value.
    cheapest = np.where(graph.allowed, graph.unary, np.inf).min(axis=1)
    trivial = np.bincount(graph.component, weights=cheapest, minlength=graph.num_components)
    energies = component_energies(graph, labels)
    closed = energies <= trivial + 1e-12 * np.maximum(1.0, trivial)
    bound[closed] = trivial[closed]
    if closed.any():
        status["closed-form:OPTIMAL"] = int(closed.sum())
    jobs = _lp_jobs(graph, labels, settings, open_components=~closed)
    if not jobs:
        return labels, bound, energies, 0, status
    if workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_run_job, job, settings, 1) for job in jobs]
            outcomes = [f.result() for f in track(futures, "LP certificate")]
    else:
        outcomes = [_run_job(job, settings, workers) for job in track(jobs, "LP certificate")]
    lp_labels = labels.copy()
    integral_components: list[np.ndarray] = []
    for job, outcome in zip(jobs, outcomes):
        status[f"{outcome.solver}:{outcome.status}"] += len(job.components)
        bound[job.components] = outcome.lower_bound
        integral = outcome.integral[job.problem.node_component]
        lp_labels[job.problem.nodes[integral]] = outcome.labels[integral]
        integral_components.append(job.components[outcome.integral])
    lp_energies = component_energies(graph, lp_labels)
    taken = np.zeros(graph.num_components, dtype=bool)
    if integral_components:
        taken[np.concatenate(integral_components)] = True
    taken &= lp_energies < energies
    switch = taken[graph.component]
    labels[switch] = lp_labels[switch]
    return labels, bound, np.where(taken, lp_energies, energies), int(taken.sum()), status


def solve_cut(graph: SopGraph, settings: SolverSettings, workers: int) -> CutResult:
    """Label every SOP (0 = background/noise) by the configured solver and certify it."""
    timer = {"start": time.perf_counter()}
    labels = argmax_labels(graph)
    cycles = moves = 0
    if settings.solver == "expansion":
        expansion = alpha_expansion(graph, labels, settings.capacity_scale, settings.max_cycles)
        labels, cycles, moves = expansion.labels, expansion.cycles, expansion.moves
        log.info(
            f"alpha-expansion: {cycles} cycles, {moves} improving moves, "
            f"max-flow {expansion.maxflow_seconds:.1f} s"
        )
    timer["solve"] = time.perf_counter()
    labels, bound, energies, integral, status = certify(graph, labels, settings, workers)
    timer["certify"] = time.perf_counter()
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(
            np.isnan(bound), np.nan, (energies - bound) / np.maximum(np.abs(bound), 1e-12)
        )
    return CutResult(
        labels=labels,
        component_energy=energies,
        component_lower_bound=bound,
        component_gap=gap,
        lp_integral_components=integral,
        status=dict(status),
        seconds={
            "solve": timer["solve"] - timer["start"],
            "certify": timer["certify"] - timer["solve"],
        },
        expansion_cycles=cycles,
        expansion_moves=moves,
    )
