"""The Calinescu-Karloff-Rabani LP relaxation of the multiway cut, as a certificate.

  min  sum_u sum_k D_u(k) x_u[k]  +  sum_(u,v) w_uv * 1/2 ||x_u - x_v||_1
  s.t. x_u in the simplex over the labels u may take.
Because both x_u and x_v sum to 1, 1/2 ||x_u - x_v||_1 = sum_k (x_u[k] - x_v[k])^+, so each edge
needs one variable z >= x_u[k] - x_v[k] per label both ends may take (a label only u may take
contributes x_u[k] directly). GLOP solves small problems exactly; PDLP (first-order) larger ones.
The lower bound is not the solver's objective but the Lagrangian value of its dual vector, which is
a valid bound for any dual vector, so an inexact PDLP answer still gives a certified bound. Several
components go into one block-diagonal LP; the bound splits exactly by component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from liid_cli.graph.build import SopGraph

INTEGRAL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LpSubproblem:
    """The SOPs of some components, with their edges, in local numbering."""

    nodes: np.ndarray  # global SOP ids
    node_component: np.ndarray  # local component number of each node (0..C-1)
    unary: np.ndarray
    allowed: np.ndarray
    tails: np.ndarray  # local
    heads: np.ndarray
    weights: np.ndarray
    num_components: int


@dataclass(frozen=True)
class LpOutcome:
    lower_bound: np.ndarray  # (C,) certified bound per component
    integral: np.ndarray  # (C,) bool: the LP solution is integral on the component
    labels: np.ndarray  # (n,) argmax of the LP solution per node
    solver: str
    status: str


def subproblem(graph: SopGraph, components: np.ndarray) -> LpSubproblem:
    """Cut the SOPs and edges of `components` out of the whole graph."""
    position = np.full(graph.num_components, -1, dtype=np.int64)
    position[components] = np.arange(len(components))
    nodes = np.flatnonzero(position[graph.component] >= 0)
    local = np.full(graph.num_sops, -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes))
    inside = local[graph.tails] >= 0
    return LpSubproblem(
        nodes=nodes,
        node_component=position[graph.component[nodes]],
        unary=graph.unary[nodes],
        allowed=graph.allowed[nodes],
        tails=local[graph.tails[inside]],
        heads=local[graph.heads[inside]],
        weights=graph.weights[inside],
        num_components=len(components),
    )


@dataclass(frozen=True)
class LpProgram:
    objective: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    column_component: np.ndarray
    row_component: np.ndarray
    x_index: np.ndarray  # (n, L) variable of x_u[k], -1 where u may not take k
    num_x: int


def build_program(problem: LpSubproblem) -> LpProgram:
    n, _ = problem.allowed.shape
    x_index = np.full(problem.allowed.shape, -1, dtype=np.int64)
    x_index[problem.allowed] = np.arange(int(problem.allowed.sum()))
    num_x = int(problem.allowed.sum())
    x_node = np.nonzero(problem.allowed)[0]
    objective_x = problem.unary[problem.allowed].astype(np.float64)
    tail_allowed, head_allowed = problem.allowed[problem.tails], problem.allowed[problem.heads]
    only_tail_edge, only_tail_label = np.nonzero(tail_allowed & ~head_allowed)
    np.add.at(
        objective_x,
        x_index[problem.tails[only_tail_edge], only_tail_label],
        problem.weights[only_tail_edge],
    )
    z_edge, z_label = np.nonzero(tail_allowed & head_allowed)
    num_z = len(z_edge)
    # Rows 0..n-1: simplex (sum_k x_u[k] = 1). Rows n..n+num_z-1: z - x_u[k] + x_v[k] >= 0.
    z_rows = n + np.arange(num_z)
    rows = np.concatenate([x_node, z_rows, z_rows, z_rows])
    cols = np.concatenate(
        [
            np.arange(num_x),
            num_x + np.arange(num_z),
            x_index[problem.tails[z_edge], z_label],
            x_index[problem.heads[z_edge], z_label],
        ]
    )
    values = np.concatenate([np.ones(num_x), np.ones(num_z), -np.ones(num_z), np.ones(num_z)])
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n + num_z, num_x + num_z))
    edge_component = problem.node_component[problem.tails]
    return LpProgram(
        objective=np.concatenate([objective_x, problem.weights[z_edge]]),
        matrix=matrix,
        row_lower=np.concatenate([np.ones(n), np.zeros(num_z)]),
        row_upper=np.concatenate([np.ones(n), np.full(num_z, np.inf)]),
        column_component=np.concatenate([problem.node_component[x_node], edge_component[z_edge]]),
        row_component=np.concatenate([problem.node_component, edge_component[z_edge]]),
        x_index=x_index,
        num_x=num_x,
    )


def lagrangian_bound(program: LpProgram, duals: np.ndarray, num_components: int) -> np.ndarray:
    """Per-component Lagrangian lower bound for dual vector `duals` (sign-corrected), with all
    variables in [0, 1]: sum_i y_i b_i + sum_j min(0, c_j - (A^T y)_j)."""
    n_simplex = int(np.sum(program.row_upper == program.row_lower))
    duals = duals.astype(np.float64).copy()
    duals[n_simplex:] = np.maximum(duals[n_simplex:], 0.0)  # only y >= 0 is valid on ">=" rows
    reduced = program.objective - program.matrix.T @ duals
    rows_part = np.bincount(
        program.row_component[:n_simplex], weights=duals[:n_simplex], minlength=num_components
    )
    columns_part = np.bincount(
        program.column_component, weights=np.minimum(reduced, 0.0), minlength=num_components
    )
    return rows_part + columns_part


def _outcome(
    problem: LpSubproblem,
    program: LpProgram,
    primal: np.ndarray,
    duals: np.ndarray,
    solver: str,
    status: str,
) -> LpOutcome:
    x = np.where(program.x_index >= 0, primal[np.maximum(program.x_index, 0)], -np.inf)
    fractional = (x > INTEGRAL_TOLERANCE) & (x < 1 - INTEGRAL_TOLERANCE)
    integral = (
        np.bincount(
            problem.node_component, weights=fractional.any(axis=1), minlength=problem.num_components
        )
        == 0
    )
    return LpOutcome(
        lower_bound=lagrangian_bound(program, duals, problem.num_components),
        integral=integral,
        labels=x.argmax(axis=1),
        solver=solver,
        status=status,
    )


def solve_glop(problem: LpSubproblem, time_limit: float) -> LpOutcome:
    from ortools.linear_solver.python import model_builder_helper as mbh

    program = build_program(problem)
    model = mbh.ModelBuilderHelper()
    columns = len(program.objective)
    model.fill_model_from_sparse_data(
        np.zeros(columns),
        np.ones(columns),
        program.objective,
        program.row_lower,
        program.row_upper,
        program.matrix,
    )
    solver = mbh.ModelSolverHelper("glop")
    solver.set_time_limit_in_seconds(time_limit)
    solver.solve(model)
    status = solver.status().name
    if not solver.has_solution():
        return _no_solution(problem, "glop", status)
    return _outcome(
        problem,
        program,
        np.asarray(solver.variable_values()),
        np.asarray(solver.dual_values()),
        "glop",
        status,
    )


def solve_pdlp(
    problem: LpSubproblem,
    time_limit: float,
    tolerance: float,
    threads: int,
    start_labels: np.ndarray | None = None,
) -> LpOutcome:
    """PDLP, warm-started from a labelling (x one-hot, z at its optimal value) when given."""
    from ortools.pdlp import solve_log_pb2, solvers_pb2
    from ortools.pdlp.python import pdlp

    program = build_program(problem)
    qp = pdlp.QuadraticProgram()
    qp.resize_and_initialize(program.matrix.shape[1], program.matrix.shape[0])
    qp.objective_vector = program.objective
    qp.constraint_matrix = program.matrix.tocsc()
    qp.constraint_lower_bounds = program.row_lower
    qp.constraint_upper_bounds = program.row_upper
    qp.variable_lower_bounds = np.zeros(program.matrix.shape[1])
    qp.variable_upper_bounds = np.ones(program.matrix.shape[1])
    params = solvers_pb2.PrimalDualHybridGradientParams()
    params.termination_criteria.eps_optimal_relative = tolerance
    params.termination_criteria.eps_optimal_absolute = tolerance
    params.termination_criteria.time_sec_limit = time_limit
    params.num_threads = max(1, threads)
    initial = None
    if start_labels is not None:
        initial = pdlp.PrimalAndDualSolution()
        x = np.zeros(program.num_x)
        x[program.x_index[np.arange(len(start_labels)), start_labels]] = 1.0
        z = np.maximum(-(program.matrix[len(start_labels) :, : program.num_x] @ x), 0.0)
        initial.primal_solution = np.concatenate([x, z])
        initial.dual_solution = np.zeros(program.matrix.shape[0])
    result = pdlp.primal_dual_hybrid_gradient(qp, params, initial_solution=initial)
    status = solve_log_pb2.TerminationReason.Name(result.solve_log.termination_reason)
    return _outcome(
        problem,
        program,
        np.asarray(result.primal_solution),
        np.asarray(result.dual_solution),
        "pdlp",
        status,
    )


def _no_solution(problem: LpSubproblem, solver: str, status: str) -> LpOutcome:
    return LpOutcome(
        lower_bound=np.full(problem.num_components, np.nan),
        integral=np.zeros(problem.num_components, dtype=bool),
        labels=np.zeros(len(problem.nodes), dtype=np.int64),
        solver=solver,
        status=status,
    )
