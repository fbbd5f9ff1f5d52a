"""kNN backends against brute force on small synthetic dumps, and the graph built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.synthetic_dump import SyntheticDumpSpec, write_synthetic_dump

from liid_cli.fileio import file_sha256
from liid_cli.graph.build import build_graph
from liid_cli.graph.dump import DumpData, FeatureStream, read_dump
from liid_cli.graph.knn import (
    Neighbours,
    find_knn,
    keep_class_sharing,
    keep_mutual,
    neighbour_table,
)
from liid_cli.graph.knn_exact import load_normalised, merge_topk
from liid_cli.graph.knn_ivf import ApproximateSettings

SMALL = SyntheticDumpSpec(
    num_images=60,
    sops_per_image=10,
    num_classes=4,
    feature_dim=32,
    latent_dim=16,
    background_modes=4,
    seed=5,
)
K = 3


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory: pytest.TempPathFactory) -> DumpData:
    index, run = write_synthetic_dump(tmp_path_factory.mktemp("knn"), SMALL)
    return read_dump(
        run / "dump" / "dump.h5", file_sha256(index), SMALL.num_classes, label_masking=True
    )


def brute_force(dump: DumpData, share_class: bool) -> dict[int, np.ndarray]:
    """Per SOP, its K best similarities over all other SOPs, by one dense matrix; with
    `share_class`, those of them whose image shares a labelled class with the SOP's."""
    vectors = load_normalised(FeatureStream(dump)).float()
    sims = (vectors @ vectors.T).numpy()
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :K]
    top = np.take_along_axis(sims, order, axis=1)
    if share_class:
        labels = dump.image_labels[dump.sop_image, 1:].astype(float)
        shares = (labels @ labels.T) > 0.5
        top = np.where(np.take_along_axis(shares, order, axis=1), top, -np.inf)
    return {row: np.sort(values[np.isfinite(values)])[::-1] for row, values in enumerate(top)}


def found_by_row(rows: np.ndarray, sims: np.ndarray) -> dict[int, np.ndarray]:
    return {row: np.sort(sims[rows == row])[::-1] for row in np.unique(rows)}


def exact_knn(dump: DumpData, share_class: bool) -> Neighbours:
    """The exact CPU backend on one thread, seeded, then the class-sharing filter if asked."""
    found = find_knn(FeatureStream(dump), K, "cpu", None, 0, np.random.default_rng(0), threads=1)
    return keep_class_sharing(found, dump) if share_class else found


@pytest.mark.parametrize("share_class", [True, False])
def test_exact_backend_matches_brute_force(small_dump: DumpData, share_class: bool) -> None:
    expected = brute_force(small_dump, share_class)
    found = exact_knn(small_dump, share_class)
    got = found_by_row(found.rows, found.similarity)
    for row, values in expected.items():
        assert np.allclose(got.get(row, np.zeros(0)), values, atol=1e-5), row
    assert found.recall == 1.0 and found.backend == "exact-cpu"
    assert np.all(found.rows != found.cols)


def test_class_sharing_filters_after_the_search_over_all_sops(small_dump: DumpData) -> None:
    everything = exact_knn(small_dump, False)
    found = exact_knn(small_dump, True)
    labels = small_dump.image_labels[:, 1:]
    shared = (
        labels[small_dump.sop_image[found.rows]] & labels[small_dump.sop_image[found.cols]]
    ).any(axis=1)
    assert shared.all()
    # The filter only removes edges (the search is not restricted), so some SOPs keep fewer than
    # K, and the smallest similarity of the search is kept for relative edge weights.
    assert set(zip(found.rows.tolist(), found.cols.tolist())) < set(
        zip(everything.rows.tolist(), everything.cols.tolist())
    )
    assert found.smallest == pytest.approx(float(everything.similarity.min()))


def approximate(candidates: int, probe: int) -> ApproximateSettings:
    return ApproximateSettings(
        search_dims=8,
        candidates=candidates,
        ivf_lists_per_sqrt=2.0,
        ivf_probe=probe,
        ivf_train_iterations=5,
        pca_sample=600,
    )


def test_approximate_backend_with_every_list_probed_is_exact(small_dump: DumpData) -> None:
    expected = brute_force(small_dump, False)
    found = find_knn(
        FeatureStream(small_dump),
        K,
        "cpu",
        approximate(candidates=200, probe=1000),
        recall_sample=10_000,
        rng=np.random.default_rng(0),
        threads=1,
    )
    got = found_by_row(found.rows, found.similarity)
    for row, values in expected.items():
        assert np.allclose(got.get(row, np.zeros(0)), values, atol=1e-5), row
    assert found.recall == pytest.approx(1.0)
    assert found.recall_queries == small_dump.num_sops


def test_approximate_backend_reports_its_true_recall(small_dump: DumpData) -> None:
    # Few candidates in a 8-d projection miss neighbours; with every SOP sampled, the reported
    # recall must equal the recall counted against brute force.
    expected = brute_force(small_dump, False)
    found = find_knn(
        FeatureStream(small_dump),
        K,
        "cpu",
        approximate(candidates=3, probe=1),
        recall_sample=10_000,
        rng=np.random.default_rng(0),
        threads=1,
    )
    got = found_by_row(found.rows, found.similarity)
    hits = sum(
        np.isin(np.round(got.get(row, np.zeros(0)), 5), np.round(values, 5)).sum()
        for row, values in expected.items()
    )
    total = sum(len(values) for values in expected.values())
    assert found.recall < 1.0
    assert found.recall == pytest.approx(hits / total, abs=0.02)


def test_merge_topk_keeps_the_best_distinct_neighbours() -> None:
    rows = np.array([0, 0, 0, 0, 1, 1])
    cols = np.array([5, 6, 5, 7, 2, 3])
    sims = np.array([0.9, 0.8, 0.9, 0.95, 0.1, 0.2], dtype=np.float32)
    merged = merge_topk(rows, cols, sims, 2)
    assert [list(a) for a in merged[:2]] == [[0, 0, 1, 1], [7, 5, 3, 2]]


def test_graph_is_symmetrised_and_split_into_components() -> None:
    probs = np.full((5, 2), 0.5)
    rows, cols = np.array([0, 1, 1, 3]), np.array([1, 0, 2, 4])
    sims = np.array([0.5, 0.6, -0.4, 0.3], dtype=np.float32)
    graph = build_graph(probs, np.ones((5, 2), bool), rows, cols, sims, delta=5.0)
    edges = sorted(
        zip(graph.tails.tolist(), graph.heads.tolist(), np.round(graph.weights, 6).tolist())
    )
    assert edges == [(0, 1, 3.0), (1, 2, 2.0), (3, 4, 1.5)]  # the larger of both directions, |cos|
    assert graph.component_sizes.tolist() == [3, 2]
    assert graph.component.tolist() == [0, 0, 0, 1, 1]
    relative = build_graph(probs, np.ones((5, 2), bool), rows, cols, sims, delta=5.0, floor=0.3)
    assert np.round(relative.weights, 6).tolist() == [1.5, 0.5, 0.0]  # delta (|cos| - floor)


def test_features_are_normalised_in_float16(tmp_path: Path, small_dump: DumpData) -> None:
    vectors = load_normalised(FeatureStream(small_dump)).float()
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(vectors)), atol=2e-3)


def test_neighbours_from_other_images_only_match_brute_force(small_dump: DumpData) -> None:
    vectors = load_normalised(FeatureStream(small_dump)).float()
    sims = (vectors @ vectors.T).numpy()
    owners = small_dump.sop_image
    sims[owners[:, None] == owners[None, :]] = -np.inf
    expected = {row: values for row, values in enumerate(-np.sort(-sims, axis=1)[:, :K])}
    found = find_knn(FeatureStream(small_dump), K, "cpu", None, 0, np.random.default_rng(0),
                     threads=1, owners=owners)
    assert not (owners[found.rows] == owners[found.cols]).any()
    got = found_by_row(found.rows, found.similarity)
    for row, values in expected.items():
        assert np.allclose(got[row], values, atol=1e-5), row
    approximate_found = find_knn(FeatureStream(small_dump), K, "cpu",
                                 approximate(candidates=200, probe=1000), 10_000,
                                 np.random.default_rng(0), threads=1, owners=owners)
    assert not (owners[approximate_found.rows] == owners[approximate_found.cols]).any()
    assert approximate_found.recall == pytest.approx(1.0)


def test_mutual_filter_keeps_pairs_found_from_both_ends() -> None:
    found = Neighbours(
        rows=np.array([0, 1, 1, 2, 3]),
        cols=np.array([1, 0, 2, 3, 1]),
        similarity=np.array([0.9, 0.9, 0.8, 0.7, 0.6], dtype=np.float32),
        backend="exact-cpu",
    )
    mutual = keep_mutual(found)
    assert sorted(zip(mutual.rows.tolist(), mutual.cols.tolist())) == [(0, 1), (1, 0)]
    assert np.allclose(mutual.similarity, [0.9, 0.9])


def test_neighbour_table_lists_the_most_similar_first_and_pads_with_minus_one() -> None:
    found = Neighbours(
        rows=np.array([2, 0, 0, 2, 0, 3]),
        cols=np.array([0, 3, 1, 3, 2, 0]),
        similarity=np.array([0.5, 0.2, 0.9, 0.7, 0.4, 0.8], dtype=np.float32),
        backend="exact-cpu",
    )
    table = neighbour_table(found, num_sops=4, k=2)
    assert table.dtype == np.int32
    assert table.tolist() == [[1, 2], [-1, -1], [3, 0], [0, -1]]
