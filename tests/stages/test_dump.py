"""`liid dump` on the tiny demo: the dump.h5 contract, and an image without proposals."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from tests.helpers import assert_one_line_error, liid
from tests.proposal_fixture import run_demo_stage, write_fake_proposals

from liid_cli import artifacts
from liid_cli.data.images import read_rgb
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256
from liid_cli.h5store import open_csr
from liid_cli.models.crop_embedding import build_embedder, embed_boxes
from liid_cli.proposals.store import open_proposals
from liid_cli.stages import dump as dump_stage


@pytest.fixture(scope="module")
def dumped(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("dump") / "run"
    index = tiny_demo / "index_train.json"
    write_fake_proposals(run_dir, index, random_per_image=3, empty_image_ids=(2,))
    run_demo_stage("train-cam", run_dir, index, "save_cams=false")
    run_demo_stage("train-mil", run_dir, index, "epochs=1")
    manifest = run_demo_stage("dump", run_dir, index)
    assert manifest["metrics"]["images_per_second"] > 0
    return run_dir


def test_dump_follows_the_contract(dumped: Path, tiny_demo: Path) -> None:
    index_path = tiny_demo / "index_train.json"
    index = load_index(index_path)
    path = artifacts.stage_dir(dumped, "dump") / artifacts.DUMP_H5
    with (
        open_proposals(dumped, index_path) as store,
        open_csr(path, artifacts.SCHEMA_DUMP, file_sha256(index_path), "dump") as dump,
    ):
        assert (dump.image_ids == store.image_ids).all() and (
            dump.offsets == store.csr.offsets
        ).all()
        assert (
            dump.rows_of(2).start == dump.rows_of(2).stop
        )  # the image without proposals has no rows
        probs = dump.column(artifacts.H5_PROBS)
        features = dump.column(artifacts.H5_FEATURES)
        assert probs.dtype == np.float32 and probs.shape == (dump.num_rows, 7)
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert features.dtype == np.float16 and features.shape == (dump.num_rows, 320)  # lite0
        # the demo profile also stores lite0 ImageNet embeddings of the boxes' crops
        crops = dump.column(artifacts.H5_CROP_FEATURES)
        assert crops.dtype == np.float16 and crops.shape == (dump.num_rows, 1280)
        labels = dump.column(artifacts.H5_LABELS)
        assert labels.shape == (len(index.images), 7) and (labels[:, 0] == 1).all()
        for position, proposals in enumerate(store):
            image = index.images[position]
            assert (labels[position] == index.classes.label_vector(image["labels"])).all()
            assert (dump.read(artifacts.H5_BOXES, proposals.image_id) == proposals.boxes).all()
            assert (
                dump.read(artifacts.H5_PROPOSAL_INDEX, proposals.image_id)
                == np.arange(len(proposals))
            ).all()


def test_dump_batches_agree_with_one_image_at_a_time(dumped: Path, tiny_demo: Path) -> None:
    index_path = tiny_demo / "index_train.json"
    single = run_demo_stage("dump", dumped, index_path, "batch_size=1", force=True)
    assert single["metrics"]["proposals"] > 0
    path = artifacts.stage_dir(dumped, "dump") / artifacts.DUMP_H5
    with open_csr(path, artifacts.SCHEMA_DUMP, None, "dump") as dump:
        one_by_one = dump.column(artifacts.H5_PROBS)
    run_demo_stage("dump", dumped, index_path, "batch_size=5", force=True)
    with open_csr(path, artifacts.SCHEMA_DUMP, None, "dump") as dump:
        assert np.allclose(dump.column(artifacts.H5_PROBS), one_by_one, atol=1e-5)


def test_crop_features_are_the_boxes_imagenet_embeddings_and_optional(
    dumped: Path, tiny_demo: Path
) -> None:
    index_path = tiny_demo / "index_train.json"
    index = load_index(index_path)
    path = artifacts.stage_dir(dumped, "dump") / artifacts.DUMP_H5
    run_demo_stage("dump", dumped, index_path, force=True)
    image = index.images[0]
    with open_csr(path, artifacts.SCHEMA_DUMP, None, "dump") as dump:
        boxes = dump.read(artifacts.H5_BOXES, int(image["id"]))
        stored = dump.read(artifacts.H5_CROP_FEATURES, int(image["id"])).astype(np.float32)
    embedder = build_embedder("tf_efficientnet_lite0", "imagenet")
    expected = embed_boxes(embedder, read_rgb(index.image_path(image)), boxes, 96, "cpu")
    assert np.allclose(stored, expected, rtol=1e-2, atol=1e-2)
    run_demo_stage("dump", dumped, index_path, "crop_features=false", force=True)
    with open_csr(path, artifacts.SCHEMA_DUMP, None, "dump") as dump:
        assert artifacts.H5_CROP_FEATURES not in dump.handle


def test_a_batch_runs_in_groups_of_one_image_size() -> None:
    images = [torch.zeros(3, 32, 64), torch.zeros(3, 48, 48), torch.zeros(3, 32, 64)]
    assert dump_stage._same_size_groups(images) == [[0, 2], [1]]


def test_cli_runs_the_three_stages_and_reports_bad_input(tiny_demo: Path, tmp_path: Path) -> None:
    from tests.helpers import assert_one_line_error, liid

    run_dir = tmp_path / "run"
    assert_one_line_error(
        liid("train-mil", "--run", run_dir, "--data", tiny_demo / "index_train.json"),
        "run `liid proposals",
    )
    write_fake_proposals(run_dir, tiny_demo / "index_train.json", random_per_image=2)
    small = ["--profile", "demo", "--set", "input_size=48", "--set", "epochs=1", "--device", "cpu"]
    result = liid("train-cam", "--run", run_dir, *small, "--save-cams", "--set", "save_cams_max=1")
    assert result.exit_code == 0, result.output
    assert any((artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_MAPS_DIR).iterdir())
    assert_one_line_error(
        liid("train-mil", "--run", run_dir, *small, "--weights", tmp_path / "missing.pt"),
        "missing.pt",
    )
    assert liid("train-mil", "--run", run_dir, *small, "--set", "roi_size=2").exit_code == 0
    assert_one_line_error(
        liid("dump", "--run", run_dir, "--profile", "demo", "--set", "crops.weights=none"),
        "crop_features=false",
    )
    assert not (artifacts.stage_dir(run_dir, "dump") / artifacts.DUMP_H5).exists()
    result = liid("dump", "--run", run_dir, "--profile", "demo", "--device", "cpu")
    assert result.exit_code == 0 and "images/s" in result.output, result.output


def _poison(path: Path, dataset: str, row: int) -> None:
    with h5py.File(path, "r+") as handle:
        values = handle[dataset][:]
        values[row] = np.nan
        handle[dataset][...] = values


def test_non_finite_numbers_in_an_upstream_artifact_are_one_line_errors(
    dumped: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(dumped, run_dir, symlinks=True)
    common = ["--run", run_dir, "--profile", "demo", "--force", "-q"]
    assert liid("cut", *common).exit_code == 0
    cam_scores = artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_SCORES_H5
    _poison(cam_scores, artifacts.H5_CAM_MASK_AGREEMENT, 4)
    result = liid("export-coco", *common)
    assert_one_line_error(result, f"{cam_scores}: NaN or inf in `cam_mask_agreement` at rows 4 (image",
                          "rerun `liid train-cam --force`")
    assert not (artifacts.stage_dir(run_dir, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON).exists()
    proposals = artifacts.stage_dir(run_dir, "proposals") / artifacts.PROPOSALS_H5
    _poison(proposals, artifacts.H5_BOXES, 2)
    before = file_sha256(artifacts.stage_dir(run_dir, "dump") / artifacts.DUMP_H5)
    result = liid("dump", *common)
    assert_one_line_error(result, f"{proposals}: NaN or inf in `boxes` at rows 2 (image",
                          "rerun `liid proposals --force`")
    assert file_sha256(artifacts.stage_dir(run_dir, "dump") / artifacts.DUMP_H5) == before


def test_a_file_size_limit_is_a_one_line_error_that_keeps_the_previous_output(
    dumped: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(dumped, run_dir, symlinks=True)
    assert liid("cut", "--run", run_dir, "--profile", "demo", "-q").exit_code == 0
    cut_h5 = artifacts.stage_dir(run_dir, "cut") / artifacts.CUT_H5
    before = file_sha256(cut_h5)
    assert cut_h5.stat().st_size > 20_000

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run(
        [sys.executable, "-m", "liid_cli", "cut", "--run", str(run_dir), "--profile", "demo",
         "--force", "-q"],
        preexec_fn=limit_file_size, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [f"error: {cut_h5}: file size limit; free space or choose another --run"]
    assert file_sha256(cut_h5) == before
    assert [p.name for p in run_dir.iterdir() if ".tmp-" in p.name] == []
