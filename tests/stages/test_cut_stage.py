"""`liid cut` end to end on a small synthetic dump, the argmax ablation, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from benchmarks.synthetic_dump import SyntheticDumpSpec, write_synthetic_dump

from helpers import assert_one_line_error, liid
from liid_cli import artifacts
from liid_cli.fileio import file_sha256, read_json
from liid_cli.graph.build import argmax_labels, edgeless_graph, terminal_weights
from liid_cli.stages.baselines import no_graph_labels

SMALL = SyntheticDumpSpec(
    num_images=40,
    sops_per_image=8,
    num_classes=3,
    feature_dim=24,
    latent_dim=12,
    background_modes=3,
    seed=11,
)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_synthetic_dump(tmp_path_factory.mktemp("cut"), SMALL)


@pytest.fixture
def fresh_run(synthetic_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the synthetic run, safe to corrupt."""
    index, run = synthetic_run
    root = tmp_path / "copy"
    shutil.copytree(run / "dump", root / run.name / "dump")
    shutil.copy(index, root / index.name)
    return root / index.name, root / run.name


def dump_path(run: Path) -> Path:
    return run / "dump" / artifacts.DUMP_H5


def test_cut_writes_aligned_labels_and_certified_components(
    synthetic_run: tuple[Path, Path],
) -> None:
    _, run = synthetic_run
    result = liid("cut", "--run", run, "--force")
    assert result.exit_code == 0, result.output
    with h5py.File(run / "cut" / artifacts.CUT_H5) as cut, h5py.File(dump_path(run)) as dump:
        assert cut.attrs["schema"] == artifacts.SCHEMA_CUT
        assert cut.attrs["solver"] == "expansion"
        labels = cut[artifacts.H5_LABELS][:]
        assert labels.shape == (SMALL.num_images * SMALL.sops_per_image,)
        assert np.array_equal(cut[artifacts.H5_OFFSETS][:], dump[artifacts.H5_OFFSETS][:])
        assert np.array_equal(
            cut[artifacts.H5_PROPOSAL_INDEX][:], dump[artifacts.H5_PROPOSAL_INDEX][:]
        )
        image_labels = dump[artifacts.H5_LABELS][:] > 0.5
        sop_image = np.repeat(np.arange(SMALL.num_images), SMALL.sops_per_image)
        assert image_labels[sop_image, labels].all()  # label masking: own classes or background
        table = cut[artifacts.H5_NEIGHBOURS][:]
        assert table.shape == (len(labels), 3) and (table >= 0).any()
        sops, slots = np.nonzero(table >= 0)
        assert (sop_image[table[sops, slots]] != sop_image[sops]).all()  # other images only
        probs = dump[artifacts.H5_PROBS][:]
        assert np.allclose(cut[artifacts.H5_SCORES][:], probs[np.arange(len(labels)), labels])
        sizes = cut[artifacts.H5_COMPONENT_SIZE][:]
        assert sizes.sum() == len(labels)
        assert np.array_equal(np.bincount(cut[artifacts.H5_COMPONENT][:]), sizes)
        bounds, energies = (
            cut[artifacts.H5_COMPONENT_LOWER_BOUND][:],
            cut[artifacts.H5_COMPONENT_ENERGY][:],
        )
        assert not np.isnan(bounds).any()
        assert np.all(bounds <= energies + 1e-6)
        assert cut.attrs["energy"] == pytest.approx(energies.sum())
    metrics = read_json(run / "cut" / artifacts.MANIFEST)["metrics"]
    assert metrics["knn_backend"] == "exact-cpu" and metrics["edges"] > 0
    assert 0 <= metrics["gap"] < 1e-3
    again = liid("cut", "--run", run)
    assert again.exit_code == 0 and "up to date" in again.output


def test_argmax_ablation_ignores_the_graph(
    synthetic_run: tuple[Path, Path], tmp_path: Path
) -> None:
    index, run = synthetic_run
    ablation = tmp_path / "ablation"
    shutil.copytree(run / "dump", ablation / "dump")
    result = liid("cut", "--run", ablation, "--data", index, "--solver", "argmax",
                  "--set", "terminals=probabilities")
    assert result.exit_code == 0, result.output
    with h5py.File(ablation / "cut" / artifacts.CUT_H5) as cut, h5py.File(dump_path(run)) as dump:
        sop_image = np.repeat(np.arange(SMALL.num_images), SMALL.sops_per_image)
        masked = dump[artifacts.H5_PROBS][:] * dump[artifacts.H5_LABELS][:][sop_image]
        assert np.array_equal(cut[artifacts.H5_LABELS][:], masked.argmax(axis=1))
        assert cut.attrs["solver"] == "argmax"
        assert (cut[artifacts.H5_NEIGHBOURS][:] == -1).all()  # no graph, no neighbours to vote


@pytest.mark.parametrize("solver", ["argmax", "expansion"])
def test_authors_terminals_give_every_sop_a_labelled_class(
    synthetic_run: tuple[Path, Path], tmp_path: Path, solver: str
) -> None:
    index, run = synthetic_run
    other = tmp_path / "authors"
    shutil.copytree(run / "dump", other / "dump")
    result = liid(
        "cut", "--run", other, "--data", index, "--solver", solver, "--set", "terminals=authors"
    )
    assert result.exit_code == 0, result.output
    with h5py.File(other / "cut" / artifacts.CUT_H5) as cut, h5py.File(dump_path(run)) as dump:
        labels = cut[artifacts.H5_LABELS][:]
        sop_image = np.repeat(np.arange(SMALL.num_images), SMALL.sops_per_image)
        image_labels = dump[artifacts.H5_LABELS][:][sop_image] > 0.5
        assert (labels > 0).all() and image_labels[np.arange(len(labels)), labels].all()
        if solver == "argmax":
            foreground = dump[artifacts.H5_PROBS][:] * image_labels
            assert np.array_equal(labels, foreground[:, 1:].argmax(axis=1) + 1)


@pytest.mark.parametrize(
    ("terminals", "prior_power"), [("authors", 0.0), ("probabilities", 0.0), ("authors", 1.0)]
)
def test_no_graph_baseline_labels_are_the_cuts_argmax(
    synthetic_run: tuple[Path, Path], tmp_path: Path, terminals: str, prior_power: float
) -> None:
    index, run = synthetic_run
    other = tmp_path / terminals
    shutil.copytree(run / "dump", other / "dump")
    result = liid("cut", "--run", other, "--data", index, "--solver", "argmax",
                  "--set", f"terminals={terminals}", "--set", f"class_prior_power={prior_power}")
    assert result.exit_code == 0, result.output
    dump, labels = no_graph_labels(other / "cut", other / "dump", file_sha256(index),
                                   SMALL.num_classes)
    with h5py.File(other / "cut" / artifacts.CUT_H5) as cut:
        assert np.array_equal(labels, cut[artifacts.H5_LABELS][:])
    uncorrected = argmax_labels(edgeless_graph(*terminal_weights(dump.probs, dump.allowed, terminals)))
    assert (uncorrected != labels).any() == (prior_power > 0)
    assert (labels == 0).any() == (terminals == "probabilities")


def test_approximate_backend_prints_its_recall(
    synthetic_run: tuple[Path, Path], tmp_path: Path
) -> None:
    index, run = synthetic_run
    other = tmp_path / "approximate"
    shutil.copytree(run / "dump", other / "dump")
    result = liid(
        "cut",
        "--run",
        other,
        "--data",
        index,
        "--set",
        "knn_backend=approximate",
        "--set",
        "approximate.search_dims=8",
        "--set",
        "recall_sample=100",
    )
    assert result.exit_code == 0, result.output
    assert "recall@3" in result.output
    metrics = read_json(other / "cut" / artifacts.MANIFEST)["metrics"]
    assert metrics["knn_backend"] == "approximate-ivf" and 0.0 < metrics["knn_recall"] <= 1.0


@pytest.mark.parametrize("dataset", [artifacts.H5_FEATURES, artifacts.H5_PROBS])
def test_non_finite_rows_are_refused_by_name(fresh_run: tuple[Path, Path], dataset: str) -> None:
    index, run = fresh_run
    with h5py.File(dump_path(run), "r+") as dump:
        values = dump[dataset][17]
        values[1] = np.nan
        dump[dataset][17] = values
        values = dump[dataset][42]
        values[0] = np.inf
        dump[dataset][42] = values
    result = liid("cut", "--run", run, "--data", index, "--quiet")
    assert_one_line_error(result, dataset, "rows 17 (image 3), 42 (image 6)", "liid dump --force")


def test_dump_of_another_schema_is_refused(fresh_run: tuple[Path, Path]) -> None:
    index, run = fresh_run
    with h5py.File(dump_path(run), "r+") as dump:
        dump.attrs["schema"] = "liid.proposals/1"
    assert_one_line_error(
        liid("cut", "--run", run, "--data", index, "--quiet"),
        "schema 'liid.proposals/1'",
        "liid.dump/1",
    )


def test_class_count_mismatch_is_refused(fresh_run: tuple[Path, Path]) -> None:
    index, run = fresh_run
    with h5py.File(dump_path(run), "r+") as dump:
        probs = dump[artifacts.H5_PROBS][:]
        del dump[artifacts.H5_PROBS]
        dump[artifacts.H5_PROBS] = np.concatenate(
            [probs, np.zeros((len(probs), 2), np.float32)], axis=1
        )
    assert_one_line_error(liid("cut", "--run", run, "--data", index, "--quiet"), "K=3", "columns")


def test_missing_dump_names_the_stage_to_run(
    tmp_path: Path, synthetic_run: tuple[Path, Path]
) -> None:
    index, _ = synthetic_run
    assert_one_line_error(
        liid("cut", "--run", tmp_path / "empty", "--data", index, "--quiet"), "liid dump"
    )


def test_features_larger_than_the_memory_budget_are_memory_mapped(
    synthetic_run: tuple[Path, Path], tmp_path: Path
) -> None:
    index, run = synthetic_run
    labels = {}
    for name, budget in (("in_memory", "8"), ("spilled", "0")):
        shutil.copytree(run / "dump", tmp_path / name / "dump")
        result = liid(
            "cut",
            "--run",
            tmp_path / name,
            "--data",
            index,
            "--set",
            f"max_feature_memory_gb={budget}",
        )
        assert result.exit_code == 0, result.output
        assert ("memory-mapped" in result.output) == (name == "spilled")
        with h5py.File(tmp_path / name / "cut" / artifacts.CUT_H5) as cut:
            labels[name] = cut[artifacts.H5_LABELS][:]
    assert np.array_equal(labels["in_memory"], labels["spilled"])


def test_label_summary_names_the_most_frequent_classes_only() -> None:
    from liid_cli.graph.summary import label_summary

    names = [f"class{i}" for i in range(80)]
    counts = [500] + [0] * 80
    counts[3], counts[7], counts[42] = 30, 10, 20
    text = label_summary(counts, names, shown=2)
    assert text == "noise 500; 3 of 80 classes: class2 30, class41 20, 1 more (10 SOPs)"
    assert label_summary([7, 0, 0], ["a", "b"]) == "noise 7; 0 of 2 classes"


def test_vote_neighbours_come_from_the_crop_features_when_the_dump_has_them(
    fresh_run: tuple[Path, Path],
) -> None:
    index, run = fresh_run
    with h5py.File(dump_path(run), "r+") as dump:
        rows = len(dump[artifacts.H5_PROBS])
        crops = np.random.default_rng(3).normal(size=(rows, 16)).astype(np.float16)
        dump.create_dataset(artifacts.H5_CROP_FEATURES, data=crops)
        image_labels = dump[artifacts.H5_LABELS][:, 1:] > 0.5
    result = liid("cut", "--run", run, "--data", index, "--force")
    assert result.exit_code == 0, result.output
    unit = crops.astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    similarity = unit @ unit.T
    sop_image = np.repeat(np.arange(SMALL.num_images), SMALL.sops_per_image)
    similarity[sop_image[:, None] == sop_image[None, :]] = -np.inf
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :3]
    shared = (image_labels[sop_image][:, None, :] & image_labels[sop_image[nearest]]).any(axis=2)
    with h5py.File(run / "cut" / artifacts.CUT_H5) as cut:
        table = cut[artifacts.H5_NEIGHBOURS][:]
    for sop in range(rows):  # class-sharing neighbours, most similar first, then -1
        expected = nearest[sop][shared[sop]].tolist()
        assert table[sop].tolist() == expected + [-1] * (3 - len(expected))
