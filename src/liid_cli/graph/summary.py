"""Figures and the printed table of a cut: graph size, components, recall, energy, bound, gap."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from rich.table import Table

from liid_cli.graph.build import SopGraph
from liid_cli.graph.knn import Neighbours
from liid_cli.graph.multiway import CutResult
from liid_cli.log import console, log

SIZE_BINS = (
    (1, 1),
    (2, 10),
    (11, 100),
    (101, 1000),
    (1001, 10_000),
    (10_001, 100_000),
    (100_001, None),
)


def component_distribution(sizes: np.ndarray) -> dict[str, dict[str, int]]:
    """Per size bin: how many components, and how many SOPs they hold."""
    table = {}
    for low, high in SIZE_BINS:
        chosen = (sizes >= low) & (sizes <= (high if high is not None else np.inf))
        if chosen.any():
            name = (
                f"{low}"
                if low == high
                else (f"{low}-{high}" if high is not None else f">{low - 1}")
            )
            table[name] = {"components": int(chosen.sum()), "sops": int(sizes[chosen].sum())}
    return table


def cut_metrics(
    graph: SopGraph, result: CutResult, neighbours: Neighbours | None, seconds: dict[str, float]
) -> dict[str, Any]:
    computed = ~np.isnan(result.component_lower_bound)
    energy = float(result.component_energy.sum())
    certified_energy = float(result.component_energy[computed].sum())
    bound = float(result.component_lower_bound[computed].sum()) if computed.any() else float("nan")
    label_counts = np.bincount(result.labels, minlength=graph.unary.shape[1])
    return {
        "sops": graph.num_sops,
        "edges": len(graph.weights),
        "components": graph.num_components,
        "largest_component": int(graph.component_sizes.max()) if graph.num_components else 0,
        "component_sizes": component_distribution(graph.component_sizes),
        "knn_backend": neighbours.backend if neighbours else "none",
        "knn_recall": neighbours.recall if neighbours else None,
        "knn_recall_queries": neighbours.recall_queries if neighbours else 0,
        "energy": energy,
        "certified_components": int(computed.sum()),
        "certified_sops": int(graph.component_sizes[computed].sum()),
        "certified_energy": certified_energy,
        "lower_bound": bound,
        "gap": (certified_energy - bound) / bound if computed.any() and bound > 0 else None,
        "max_component_gap": float(np.nanmax(result.component_gap)) if computed.any() else None,
        "lp_integral_components": result.lp_integral_components,
        "expansion_cycles": result.expansion_cycles,
        "expansion_moves": result.expansion_moves,
        "solver_status": result.status,
        "noise_sops": int(label_counts[0]),
        "label_counts": label_counts.tolist(),
        "seconds": seconds,
    }


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def label_summary(counts: list[int], names: list[str], shown: int = 8) -> str:
    """`noise N; k of K classes: name n, ...` with the `shown` most frequent classes only, so a
    data set with 80 classes does not print a wall of zeros."""
    per_class = sorted(zip(counts[1:], names), key=lambda item: -item[0])
    labelled = [(count, name) for count, name in per_class if count > 0]
    text = f"noise {counts[0]:,}; {len(labelled)} of {len(names)} classes"
    if labelled:
        text += ": " + ", ".join(f"{name} {count:,}" for count, name in labelled[:shown])
    if len(labelled) > shown:
        text += f", {len(labelled) - shown} more ({sum(c for c, _ in labelled[shown:]):,} SOPs)"
    return text


def print_summary(metrics: dict[str, Any], solver: str, class_names: list[str]) -> None:
    """The cut's figures as a table on stderr (not under --quiet)."""
    if not log.isEnabledFor(logging.INFO):
        return
    table = Table(title=f"liid cut ({solver})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("SOPs / edges", f"{_number(metrics['sops'])} / {_number(metrics['edges'])}")
    sizes = ", ".join(
        f"{name}: {v['components']:,} ({v['sops']:,} SOPs)"
        for name, v in metrics["component_sizes"].items()
    )
    table.add_row(
        "components",
        f"{_number(metrics['components'])}; largest {_number(metrics['largest_component'])}",
    )
    table.add_row("component sizes", sizes)
    recall = metrics["knn_recall"]
    table.add_row(
        "kNN",
        f"{metrics['knn_backend']}"
        + (
            f", recall@k {recall:.4f} against exact search on "
            f"{metrics['knn_recall_queries']} sampled SOPs"
            if recall is not None and metrics["knn_recall_queries"]
            else ""
        ),
    )
    table.add_row("energy", _number(metrics["energy"], 8))
    table.add_row(
        "LP lower bound",
        f"{_number(metrics['lower_bound'], 8)} on {metrics['certified_components']:,} "
        f"components ({metrics['certified_sops']:,} SOPs)",
    )
    table.add_row(
        "gap",
        f"{_number(metrics['gap'], 3)} "
        f"(worst component {_number(metrics['max_component_gap'], 3)}); "
        f"{metrics['lp_integral_components']:,} components took the integral LP solution",
    )
    table.add_row(
        "solver status",
        ", ".join(f"{k}: {v:,}" for k, v in metrics["solver_status"].items()) or "-",
    )
    if solver == "expansion":
        table.add_row(
            "expansion", f"{metrics['expansion_cycles']} cycles, {metrics['expansion_moves']} moves"
        )
    table.add_row("labels", label_summary(metrics["label_counts"], class_names))
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in metrics["seconds"].items()))
    console.print(table)
