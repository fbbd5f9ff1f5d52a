"""CAMs and CAM scores of regions on known maps; `train-cam` end to end on the tiny demo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.proposal_fixture import TEST_SETTINGS, run_demo_stage, write_fake_proposals

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint
from liid_cli.config import load_stage_config
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256
from liid_cli.h5store import open_csr
from liid_cli.models.cam import (
    CamClassifier,
    box_regions,
    class_cams,
    normalised_cams,
    region_agreement,
    region_scores,
    upsampled_cams,
)
from liid_cli.proposals.cam_scores import read_low_res_cams, write_low_res_cams
from liid_cli.proposals.store import open_proposals
from liid_cli.runner import run_stage
from liid_cli.stages import train_cam

MAP = torch.tensor(
    [[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 0.7], [0.8, 0.9, 1.0, 0.2], [0.1, 0.1, 0.1, 0.1]]
)


def test_box_regions_cover_the_pixels_of_each_box() -> None:
    regions = box_regions(np.array([[1.2, 0.5, 3.0, 2.0], [3.5, 3.5, 3.6, 3.6]]), height=4, width=4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[0:2, 1:3] = True
    assert (regions[0] == expected).all()
    assert regions[1].sum() == 1 and regions[1][3, 3]  # a sub-pixel box still covers one pixel


def test_region_score_is_mean_plus_max_inside_the_region() -> None:
    box = torch.from_numpy(box_regions(np.array([[1.0, 1.0, 3.0, 3.0]]), 4, 4))  # 0.5 0.6 / 0.9 1.0
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, :] = True  # 0.0 0.1 0.2 0.3
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    maps = torch.stack([MAP, 1.0 - MAP])
    scores = region_scores(maps, torch.cat([box, mask, empty]))
    expected = torch.tensor([[0.75 + 1.0, 0.25 + 0.5], [0.15 + 0.3, 0.85 + 1.0], [0.0, 0.0]])
    assert torch.allclose(scores, expected)


def test_region_agreement_is_the_f_measure_of_precision_and_coverage() -> None:
    lit = torch.zeros(1, 4, 4)
    lit[0, :2, :2] = 1.0  # a lit 2 x 2 object
    regions = torch.zeros(3, 4, 4, dtype=torch.bool)
    regions[0, :2, :2] = True  # the object: precision 1, coverage 1
    regions[1, 0, 0] = True  # a part: precision 1, coverage 1/4 -> F = 0.4
    regions[2, :, :2] = True  # a superset: precision 1/2, coverage 1 -> F = 2/3
    agreement = region_agreement(lit, regions)[:, 0]
    assert torch.allclose(agreement, torch.tensor([1.0, 0.4, 2 / 3]))


class FixedMaps(torch.nn.Module):
    """Stands in for the classifier: its class maps are fixed (2 classes, 2 x 2 cells)."""

    class_bias = torch.zeros(2)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        maps = torch.tensor([[[-1.0, 2.0], [4.0, 0.0]], [[3.0, -2.0], [1.0, 1.0]]])
        return torch.stack([maps if image[0, 0, 0] == 0 else maps.flip(-1) for image in images])


def test_cams_are_relu_max_normalised_and_flip_averaged() -> None:
    image = torch.zeros(3, 8, 8)
    logits, cams = normalised_cams(FixedMaps(), image, [1, 0], size=(2, 2), flip_average=False)
    assert torch.allclose(logits, torch.tensor([1.25, 0.75]))
    assert torch.allclose(cams[1], torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    assert torch.allclose(cams[0], torch.tensor([[1.0, 0.0], [1 / 3, 1 / 3]]))
    _, averaged = normalised_cams(FixedMaps(), image, [0], size=(2, 2), flip_average=True)
    # the mirrored image gets the same maps here; ReLU'd, flipped back and added: [[2, 2], [4, 4]]
    assert torch.allclose(averaged[0], torch.tensor([[0.5, 0.5], [1.0, 1.0]]))


def test_kept_low_resolution_cams_resize_to_the_classifiers_own_maps(tmp_path: Path) -> None:
    """baselines resizes train-cam's kept maps instead of running the classifier again: the same
    numbers, whatever the order of the classes asked for and the size of each image's maps."""
    image = torch.zeros(3, 8, 8)
    _, both = class_cams(FixedMaps(), image, [0, 1], flip_average=True)
    wide = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)  # another image, other shape
    path = tmp_path / artifacts.CAM_LOW_RES_H5
    write_low_res_cams(path, "f", np.array([7, 9, 11]),
                       [both.numpy(), wide.numpy(), np.zeros((0, 2, 2), np.float32)], [[0, 1], [1], []])
    with open_csr(path, artifacts.SCHEMA_CAM_LOW_RES, "f", "train-cam") as kept:
        resized = upsampled_cams(read_low_res_cams(kept, 7, [1, 0]), (5, 3))
        assert torch.equal(resized, normalised_cams(FixedMaps(), image, [1, 0], (5, 3), True)[1])
        assert torch.equal(read_low_res_cams(kept, 9, [1]), wide)
        assert read_low_res_cams(kept, 11, []).shape == (0, 2, 2)
        with pytest.raises(LiidError, match=r"no CAM of classes \[0\]; rerun `liid train-cam"):
            read_low_res_cams(kept, 9, [0])


def test_prior_bias_starts_at_each_class_log_odds_and_old_checkpoints_have_none() -> None:
    config = load_stage_config("train-cam", train_cam.TrainCamConfig, profile="demo")
    model = CamClassifier(config, num_classes=3, weights="none")
    assert not model.class_bias.requires_grad and (model.class_bias == 0).all()
    # 4 images: class 1 in 3 of them, class 2 in 1, class 3 in none (clipped to 1 in N + 1 = 5)
    model.start_bias_at_priors(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]]))
    expected = torch.tensor([np.log(3.0), -np.log(3.0), -np.log(4.0)], dtype=torch.float32)
    assert model.class_bias.requires_grad and torch.allclose(model.class_bias, expected)
    images = torch.rand(2, 3, 32, 32)
    maps = model.class_maps(images).mean(dim=(2, 3))
    assert torch.allclose(model(images), maps + expected, atol=1e-6)
    old_state = {k: v for k, v in model.state_dict().items() if k != "class_bias"}
    model.load_state_dict(old_state)
    assert (model.class_bias == 0).all()


def test_train_cam_trains_the_prior_bias(tiny_demo: Path, tmp_path: Path) -> None:
    index = tiny_demo / "index_train.json"
    write_fake_proposals(tmp_path / "run", index, random_per_image=2)
    run_demo_stage("train-cam", tmp_path / "run", index, "prior_bias=true")
    checkpoint = load_checkpoint(tmp_path / "run" / "cam" / artifacts.CAM_CHECKPOINT)
    bias = checkpoint["model"]["class_bias"]
    assert checkpoint["config"]["prior_bias"] and (bias != 0).all()
    manifest = json.loads((tmp_path / "run" / "cam" / artifacts.MANIFEST).read_text())
    metrics = manifest["metrics"]
    assert 0 <= metrics["blank_cams"] <= 1 and 0 <= metrics["tags_called_present"] <= 1


@pytest.fixture(scope="module")
def cam_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("cam") / "run"
    write_fake_proposals(
        run_dir, tiny_demo / "index_train.json", random_per_image=3, empty_image_ids=(2,)
    )
    run_demo_stage("train-cam", run_dir, tiny_demo / "index_train.json")
    return run_dir


def test_train_cam_writes_scores_aligned_with_the_proposals(cam_run: Path, tiny_demo: Path) -> None:
    index = tiny_demo / "index_train.json"
    folder = artifacts.stage_dir(cam_run, "train-cam")
    with (
        open_proposals(cam_run, index) as store,
        open_csr(
            folder / artifacts.CAM_SCORES_H5,
            artifacts.SCHEMA_CAM_SCORES,
            file_sha256(index),
            "train-cam",
        ) as cams,
    ):
        assert (cams.image_ids == store.image_ids).all() and (
            cams.offsets == store.csr.offsets
        ).all()
        assert cams.rows_of(2) == slice(cams.offsets[1], cams.offsets[1])  # no proposals, no rows
        box_scores = cams.column(artifacts.H5_CAM_BOX_SCORES)
        mask_scores = cams.column(artifacts.H5_CAM_MASK_SCORES)
        assert box_scores.dtype == np.float32 and box_scores.shape == mask_scores.shape
        assert box_scores.min() >= 0 and box_scores.max() <= 2.0 + 1e-5
        crop_scores = cams.column(artifacts.H5_CAM_CROP_SCORES)
        assert crop_scores.shape == box_scores.shape
        assert crop_scores.min() >= 0 and crop_scores.max() <= 1
        from liid_cli.data.index import load_index

        data = load_index(index)
        for position, image in enumerate(data.images):
            rows = slice(cams.offsets[position], cams.offsets[position + 1])
            unlabelled = data.classes.label_vector(image["labels"])[1:] == 0
            assert (box_scores[rows][:, unlabelled] == 0).all()
            assert (crop_scores[rows][:, unlabelled] == 0).all()
            assert (crop_scores[rows][:, ~unlabelled] > 0).all()  # a sigmoid for each tag
    assert (folder / artifacts.CAM_CHECKPOINT).is_file()
    assert len(list((folder / artifacts.CAM_MAPS_DIR).glob("*.png"))) >= 1


def test_new_proposals_reuse_the_classifier_and_only_score_again(
    cam_run: Path, tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tiny_demo / "index_train.json"
    run_dir = tmp_path / "run"
    shutil.copytree(cam_run, run_dir)
    before = load_checkpoint(artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_CHECKPOINT)
    write_fake_proposals(run_dir, index, random_per_image=5, seed=1)

    def no_training(*args: object) -> None:
        raise AssertionError("the classifier was trained again")

    monkeypatch.setattr(train_cam, "train_classifier", no_training)
    run_demo_stage("train-cam", run_dir, index)
    folder = artifacts.stage_dir(run_dir, "train-cam")
    after = load_checkpoint(folder / artifacts.CAM_CHECKPOINT)
    assert all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    with open_csr(folder / artifacts.CAM_SCORES_H5, artifacts.SCHEMA_CAM_SCORES,
                  file_sha256(index), "train-cam") as cams, open_proposals(run_dir, index) as store:
        assert (cams.offsets == store.csr.offsets).all()  # the new proposals were scored
    # another seed trains another classifier, so it is not reused
    spec = train_cam.SPEC
    config = load_stage_config(
        spec.name, spec.config_model, profile="demo", overrides=TEST_SETTINGS["train-cam"]
    )
    with pytest.raises(AssertionError, match="trained again"):
        run_stage(spec, config, run_dir=run_dir, index_path=index, seed=1)


def test_proposals_of_another_data_set_are_refused(
    cam_run: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write_fake_proposals(other, tiny_demo / "index_val.json")
    run_dir = tmp_path / "run"
    shutil.copytree(
        artifacts.stage_dir(cam_run, "proposals"), artifacts.stage_dir(run_dir, "proposals")
    )
    shutil.copy(
        artifacts.stage_dir(other, "proposals") / artifacts.PROPOSALS_H5,
        artifacts.stage_dir(run_dir, "proposals") / artifacts.PROPOSALS_H5,
    )
    with pytest.raises(LiidError, match="made from another data set"):
        run_demo_stage("train-cam", run_dir, tiny_demo / "index_train.json")


def test_scoring_at_a_bounded_size_matches_full_resolution_on_smooth_cams() -> None:
    from liid_cli.models.cam_scoring import proposal_scores, scoring_size
    from liid_cli.proposals.store import ImageProposals

    assert scoring_size((480, 640), 256) == (192, 256) and scoring_size((100, 80), 256) == (100, 80)
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 1, 4, 5, generator=generator)
    full = torch.nn.functional.interpolate(coarse, size=(96, 120), mode="bilinear")[:, 0]
    small = torch.nn.functional.interpolate(coarse, size=(40, 50), mode="bilinear")[:, 0]
    stack = np.zeros((3, 96, 120), dtype=bool)
    stack[0, 10:50, 20:70] = True
    stack[1, 40:90, 60:115] = True
    stack[2, 5:30, 5:30] = True
    proposals = ImageProposals.from_masks(1, stack, np.ones(3))
    at_full = proposal_scores(
        full / full.amax(dim=(1, 2), keepdim=True), proposals.boxes, stack, [0, 2], 3
    )
    at_small = proposal_scores(
        small / small.amax(dim=(1, 2), keepdim=True), proposals.boxes, stack, [0, 2], 3
    )
    # R (mean + max, in [0, 2]) within 5%: the max also sees the cells a mask edge only touches.
    for exact, approximate, tolerance in zip(at_full, at_small, (0.1, 0.1, 0.01)):
        assert np.allclose(exact, approximate, atol=tolerance)
        assert (exact[:, 1] == 0).all()  # an unlabelled class stays 0
