"""Stage 5, `liid cut`: the dataset-wide knowledge graph of SOPs and its multiway cut.

Reads `<run>/dump/dump.h5` (probabilities, float16 features streamed in chunks, image labels);
builds the top-k cosine graph (optionally only between images sharing a labelled class), labels
every SOP by alpha-expansion with OR-Tools max-flow (or by argmax, the no-graph ablation),
certifies the labelling with the CKR LP per component, and writes `<run>/cut/cut.h5`: label per SOP
(0 = noise/background), score p[label], component, and per-component energy, LP lower bound and gap.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from liid_cli import artifacts
from liid_cli.config import Count, CountOrOff, NonNegative, Positive, StageConfig
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256
from liid_cli.graph.build import (
    SopGraph,
    build_graph,
    edgeless_graph,
    prior_corrected,
    terminal_weights,
)
from liid_cli.graph.dump import DumpData, FeatureStream, crop_features_view, read_dump
from liid_cli.graph.knn import (
    Neighbours,
    find_knn,
    keep_class_sharing,
    keep_mutual,
    neighbour_table,
)
from liid_cli.graph.knn_ivf import ApproximateSettings
from liid_cli.graph.multiway import CutResult, SolverSettings, solve_cut
from liid_cli.graph.summary import cut_metrics, print_summary
from liid_cli.h5store import write_csr
from liid_cli.log import log
from liid_cli.runner import StageContext, StageSpec


class ApproximateConfig(StageConfig):
    search_dims: Count
    candidates: Count
    ivf_lists_per_sqrt: Positive
    ivf_probe: Count
    ivf_train_iterations: Count
    pca_sample: Count


class CutConfig(StageConfig):
    solver: Literal["expansion", "argmax"]
    label_masking: bool
    terminals: Literal["probabilities", "authors"]
    class_prior_power: float = Field(ge=0.0)
    neighbours: Count
    delta: NonNegative
    edge_weight: Literal["absolute", "relative"]
    other_images_only: bool
    mutual: bool
    share_class_edges: bool
    knn_backend: Literal["auto", "exact", "approximate"]
    exact_max_sops: CountOrOff
    max_feature_memory_gb: NonNegative  # 0: always memory-mapped
    approximate: ApproximateConfig
    recall_sample: CountOrOff
    capacity_scale: Positive
    max_cycles: Count
    lp_max_sops: CountOrOff
    glop_max_sops: CountOrOff
    lp_batch_sops: Count
    lp_time_limit: Positive
    pdlp_tolerance: Positive


def cut_terminals(dump: DumpData, config: CutConfig) -> tuple[np.ndarray, np.ndarray]:
    """The SOP-terminal weights and allowed labels of the cut (and of the no-graph baseline)."""
    probs = prior_corrected(dump.probs, dump.image_labels, config.class_prior_power)
    return terminal_weights(probs, dump.allowed, config.terminals)


def find_neighbours(config: CutConfig, dump: DumpData, context: StageContext) -> Neighbours:
    """kNN edges by the configured backend (the approximate one reports its measured recall),
    filtered by class sharing; the mutual filter is the graph's alone (`run`)."""
    device = context.device
    exact = config.knn_backend == "exact" or (
        config.knn_backend == "auto"
        and (device.startswith("cuda") or dump.num_sops <= config.exact_max_sops)
    )
    approximate = None if exact else ApproximateSettings(**config.approximate.model_dump())
    spill = None
    if dump.num_sops * dump.feature_dim * 2 > config.max_feature_memory_gb * 2**30:
        spill = context.cache_dir / f"{dump.features_name}.npy"
        log.info(f"features exceed {config.max_feature_memory_gb} GB: memory-mapped from {spill}")
    found = find_knn(
        FeatureStream(dump),
        config.neighbours,
        device,
        approximate,
        config.recall_sample,
        np.random.default_rng(context.seed),
        context.workers,
        spill,
        dump.sop_image if config.other_images_only else None,
    )
    return keep_class_sharing(found, dump) if config.share_class_edges else found


def write_cut(
    context: StageContext,
    dump: DumpData,
    config: CutConfig,
    result: CutResult,
    graph: SopGraph,
    table: np.ndarray,
    metrics: dict[str, Any],
) -> None:
    """cut.h5: each SOP's label, p[label], component and kNN neighbours (export-coco's scores)."""
    rows = np.arange(dump.num_sops)
    write_csr(
        context.out_dir / artifacts.CUT_H5,
        schema=artifacts.SCHEMA_CUT,
        fingerprint=file_sha256(context.index_path),
        image_ids=dump.image_ids,
        counts=np.diff(dump.offsets),
        rows={
            artifacts.H5_LABELS: result.labels.astype(np.int32),
            artifacts.H5_SCORES: dump.probs[rows, result.labels].astype(np.float32),
            artifacts.H5_PROPOSAL_INDEX: dump.proposal_index.astype(np.int32),
            artifacts.H5_COMPONENT: graph.component.astype(np.int32),
            artifacts.H5_NEIGHBOURS: table,
        },
        per_image={
            artifacts.H5_COMPONENT_SIZE: graph.component_sizes.astype(np.int64),
            artifacts.H5_COMPONENT_ENERGY: result.component_energy,
            artifacts.H5_COMPONENT_LOWER_BOUND: result.component_lower_bound,
            artifacts.H5_COMPONENT_GAP: result.component_gap,
        },
        attrs={
            "solver": config.solver,
            "energy": metrics["energy"],
            "lower_bound": metrics["lower_bound"],
            "gap": np.nan if metrics["gap"] is None else metrics["gap"],
            "solver_status": json.dumps(result.status),
            "knn_backend": metrics["knn_backend"],
            "knn_recall": np.nan if metrics["knn_recall"] is None else metrics["knn_recall"],
            "seconds": json.dumps(metrics["seconds"]),
        },
    )


def run(config: CutConfig, context: StageContext) -> dict[str, Any]:
    """Read dump.h5, build the graph, cut it, write cut.h5 and print the summary table."""
    timer = {"start": time.perf_counter()}
    index = load_index(context.index_path)
    dump = read_dump(
        context.upstream("dump") / artifacts.DUMP_H5,
        file_sha256(context.index_path),
        index.classes.num_classes,
        config.label_masking,
    )
    timer["read"] = time.perf_counter()
    weights, allowed = cut_terminals(dump, config)
    neighbours = None
    floor = 0.0
    table = np.full((dump.num_sops, config.neighbours), -1, dtype=np.int32)
    if config.solver == "argmax":
        graph = edgeless_graph(weights, allowed)
    else:
        found = find_neighbours(config, dump, context)
        crops = crop_features_view(dump)
        voters = found if crops is None else find_neighbours(config, crops, context)
        table = neighbour_table(voters, dump.num_sops, config.neighbours)
        neighbours = keep_mutual(found) if config.mutual else found
        if config.edge_weight == "relative" and len(neighbours.similarity):
            floor = float(neighbours.smallest)
        graph = build_graph(
            weights,
            allowed,
            neighbours.rows,
            neighbours.cols,
            neighbours.similarity,
            config.delta,
            floor,
        )
    timer["graph"] = time.perf_counter()
    log.info(
        f"graph: {graph.num_sops:,} SOPs, {len(graph.weights):,} edges, {graph.num_components:,} "
        f"components (largest {int(graph.component_sizes.max()) if graph.num_sops else 0:,})"
    )
    settings = SolverSettings(
        solver=config.solver,
        capacity_scale=config.capacity_scale,
        max_cycles=config.max_cycles,
        lp_max_sops=config.lp_max_sops,
        glop_max_sops=config.glop_max_sops,
        lp_batch_sops=config.lp_batch_sops,
        lp_time_limit=config.lp_time_limit,
        pdlp_tolerance=config.pdlp_tolerance,
    )
    result = solve_cut(graph, settings, context.workers)
    timer["cut"] = time.perf_counter()
    seconds = {
        "read": timer["read"] - timer["start"],
        "knn+graph": timer["graph"] - timer["read"],
        **(neighbours.seconds if neighbours else {}),
        **result.seconds,
    }
    metrics = cut_metrics(graph, result, neighbours, seconds)
    write_cut(context, dump, config, result, graph, table, metrics)
    metrics["seconds"]["write"] = time.perf_counter() - timer["cut"]
    metrics["seconds"]["total"] = time.perf_counter() - timer["start"]
    print_summary(metrics, config.solver, list(index.classes.names))
    return metrics


SPEC = StageSpec(name="cut", config_model=CutConfig, run=run)
