"""`train-mil` on the tiny demo: the loss goes down, resume, NaN stop, mismatched inputs refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.proposal_fixture import TEST_SETTINGS, run_demo_stage, write_fake_proposals

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint
from liid_cli.config import load_stage_config
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json
from liid_cli.models.backbones import TrunkConfig
from liid_cli.models.mil import (
    ClassCentres,
    MilNetwork,
    ProposalDataset,
    ProposalImage,
    single_item,
)
from liid_cli.runner import StageContext
from liid_cli.stages import train_mil


@pytest.fixture(scope="module")
def cam_ready(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with proposals (image 2 has none) and a finished train-cam."""
    run_dir = tmp_path_factory.mktemp("mil") / "run"
    write_fake_proposals(
        run_dir, tiny_demo / "index_train.json", random_per_image=3, empty_image_ids=(2,)
    )
    run_demo_stage("train-cam", run_dir, tiny_demo / "index_train.json", "save_cams=false")
    return run_dir


LITE0 = TrunkConfig(
    backbone="tf_efficientnet_lite0", weights="none", output_stride=16, norm="bn", frozen_levels=0
)


def test_network_gives_one_row_per_box_in_order() -> None:
    network = MilNetwork(LITE0, num_classes=3, roi_op="align", roi_size=2).eval()
    images = torch.randn(2, 3, 32, 32)
    boxes = [
        torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 32.0, 32.0]]),
        torch.tensor([[0.0, 0.0, 32.0, 32.0]]),
    ]
    logits, features = network(images, boxes)
    assert logits.shape == (3, 4) and features.shape == (3, network.feature_dim)
    alone, _ = network(images[1:], boxes[1:])
    assert torch.allclose(alone, logits[2:], atol=1e-5)
    pooled, _ = MilNetwork(LITE0, 3, roi_op="pool", roi_size=2).eval()(images, boxes)
    assert pooled.shape == (3, 4)


def _context(run_dir: Path, index: Path, out: Path) -> StageContext:
    return StageContext(
        run_dir=run_dir,
        out_dir=out,
        cache_dir=artifacts.cache_dir(run_dir, "train-mil"),
        index_path=index,
        seed=0,
        device="cpu",
        workers=1,
    )


def _config(*extra: str) -> train_mil.TrainMilConfig:
    return load_stage_config(
        "train-mil",
        train_mil.TrainMilConfig,
        profile="demo",
        overrides=[*TEST_SETTINGS["train-mil"], *extra],
    )


def test_a_few_epochs_lower_the_loss_and_skip_images_without_proposals(
    cam_ready: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    index = tiny_demo / "index_train.json"
    config = _config("epochs=3", "lr=0.001")
    context = _context(cam_ready, index, tmp_path)
    items = train_mil.training_images(train_mil.load_index(index), context, "box")
    assert 2 not in {item.image_id for item in items} and len(items) == 23
    network = train_mil.build_network(config, 6, cam_ready)
    centres = ClassCentres(6, network.feature_dim)
    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loader = torch.utils.data.DataLoader(
        ProposalDataset(items, config.input_size, flip=False), batch_size=1, collate_fn=single_item
    )
    means = [
        train_mil.train_one_epoch(
            network, centres, loader, optimizer, scaler, config, "cpu", epoch, 1
        )
        for epoch in range(3)
    ]
    assert means[-1]["total"] < means[0]["total"], means
    assert set(means[0]) == {"total", "att", "mil", "cent"}
    assert bool(centres.known.any())


def test_nan_loss_stops_training_naming_the_step(
    cam_ready: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    config = _config()
    context = _context(cam_ready, tiny_demo / "index_train.json", tmp_path)
    items = train_mil.training_images(train_mil.load_index(context.index_path), context, "box")
    network = train_mil.build_network(config, 6, cam_ready)
    with torch.no_grad():
        network.classifier.weight[0, 0] = float("nan")
    loader = torch.utils.data.DataLoader(
        ProposalDataset(items, config.input_size, flip=False), batch_size=1, collate_fn=single_item
    )
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
    with pytest.raises(LiidError, match=r"loss became nan at epoch 2, step 1 \(image id \d+\)"):
        train_mil.train_one_epoch(
            network,
            ClassCentres(6, network.feature_dim),
            loader,
            optimizer,
            torch.amp.GradScaler("cuda", enabled=False),
            config,
            "cpu",
            1,
            1,
        )


def test_resume_continues_at_the_next_epoch(
    cam_ready: Path, tiny_demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tiny_demo / "index_train.json"
    run_demo_stage("train-mil", cam_ready, index, "epochs=3", force=True)
    uninterrupted = load_checkpoint(
        artifacts.stage_dir(cam_ready, "train-mil") / artifacts.MIL_CHECKPOINT
    )["model"]
    shutil.rmtree(artifacts.stage_dir(cam_ready, "train-mil"))
    real_epoch = train_mil.train_one_epoch
    epochs_run: list[int] = []

    def stop_in_second_epoch(*args: object) -> dict[str, float]:
        epoch = args[7]
        if epoch == 1 and not epochs_run.count(-1):
            epochs_run.append(-1)
            raise KeyboardInterrupt
        epochs_run.append(epoch)  # type: ignore[arg-type]
        return real_epoch(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(train_mil, "train_one_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_demo_stage("train-mil", cam_ready, index, "epochs=3", force=True)
    assert not (artifacts.stage_dir(cam_ready, "train-mil") / artifacts.MANIFEST).exists()
    point = artifacts.cache_dir(cam_ready, "train-mil") / artifacts.RESUME_CHECKPOINT.format(part="")
    assert load_checkpoint(point)["state"]["epoch"] == 1
    manifest = run_demo_stage("train-mil", cam_ready, index, "epochs=3", force=True, resume=True)
    assert epochs_run == [0, -1, 1, 2]
    assert manifest["metrics"]["start_epoch"] == 1 and "resume" not in manifest["config"]
    saved = load_checkpoint(artifacts.stage_dir(cam_ready, "train-mil") / artifacts.MIL_CHECKPOINT)
    assert saved["epoch"] == 3 and saved["class_names"][0] == "ellipse"
    # the same random draws after the resume: the weights equal the uninterrupted run's, bit for bit
    assert all(torch.equal(saved["model"][key], value) for key, value in uninterrupted.items())
    assert not artifacts.cache_dir(cam_ready, "train-mil").exists()


def test_cam_scores_of_other_proposals_are_refused(
    cam_ready: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(cam_ready, run_dir)
    write_fake_proposals(
        run_dir, tiny_demo / "index_train.json", seed=7
    )  # proposals remade after train-cam
    with pytest.raises(LiidError, match=r"other proposals.*liid train-cam .*--force"):
        run_demo_stage("train-mil", run_dir, tiny_demo / "index_train.json")


def test_all_losses_off_is_an_error(cam_ready: Path, tiny_demo: Path) -> None:
    with pytest.raises(LiidError, match="every loss is switched off"):
        run_demo_stage(
            "train-mil",
            cam_ready,
            tiny_demo / "index_train.json",
            "loss.attention=false",
            "loss.mil=false",
            "loss.centre=false",
        )


@pytest.mark.parametrize("output_size", [1, 2, 7])
def test_roi_align_mean_equals_torchvision_roi_align_then_mean(output_size: int) -> None:
    from torchvision.ops import roi_align

    from liid_cli.models.mil import roi_align_mean

    generator = torch.Generator().manual_seed(0)
    feature_map = torch.randn(
        1, 5, 6, 9, generator=generator, dtype=torch.float64, requires_grad=True
    )
    boxes = torch.tensor(
        [
            [0.0, 0.0, 72.0, 48.0],
            [10.5, 3.2, 30.1, 17.9],
            [60.0, 40.0, 90.0, 70.0],
            [-20.0, -12.0, 8.0, 4.0],
            [33.0, 21.0, 34.0, 21.5],
        ],
        dtype=torch.float64,
    )
    expected = roi_align(
        feature_map, [boxes], output_size, spatial_scale=1 / 8, sampling_ratio=2, aligned=True
    ).mean(dim=(2, 3))
    found = roi_align_mean(feature_map[0], boxes, output_size, spatial_scale=1 / 8)
    assert torch.allclose(found, expected, atol=1e-10)
    (gradient,) = torch.autograd.grad(found.sum(), feature_map)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), feature_map)
    assert torch.allclose(gradient, expected_gradient, atol=1e-10)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(cam_ready: Path, tiny_demo: Path) -> None:
    """train-mil under torchrun starts like `liid train`: rank 0 runs the stage, rank 1 follows."""
    settings = [item for key in TEST_SETTINGS["train-mil"] for item in ("--set", key)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "--",
        "liid_cli", "train-mil", "--run", str(cam_ready), "--data", str(tiny_demo / "index_train.json"),
        "--profile", "demo", *settings, "--force",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_json(artifacts.stage_dir(cam_ready, "train-mil") / artifacts.MANIFEST)
    assert manifest["metrics"]["world_size"] == 2


def test_photos_keep_their_aspect_ratio_and_their_boxes_follow() -> None:
    """With keep_aspect a 60 x 120 photo becomes 32 x 64 at input_size 45 (the same area), not a
    45 x 45 square; its boxes scale with it and mirror with the flip."""
    photo = np.zeros((60, 120, 3), dtype=np.uint8)
    photo[:, :30] = 255  # the left quarter is white
    item = ProposalImage(1, Path("photo.png"), np.zeros(2, np.float32),
                         np.array([[0, 0, 30, 60]], np.float32), np.zeros((1, 0), np.float32))

    def dataset(flip: bool, keep_aspect: bool = True) -> ProposalDataset:
        return ProposalDataset([item], 45, flip, reader=lambda path: photo, keep_aspect=keep_aspect)

    assert tuple(dataset(False, keep_aspect=False)[0]["image"].shape) == (3, 45, 45)
    plain = dataset(False)[0]
    assert tuple(plain["image"].shape) == (3, 32, 64)
    assert plain["boxes"][0].tolist() == pytest.approx([0, 0, 16, 32])
    assert float(plain["image"][:, :, :16].mean()) == pytest.approx(1.0)
    torch.manual_seed(0)
    assert torch.rand(()) < 0.5  # so the first draw after this seed flips
    torch.manual_seed(0)
    flipped = dataset(True)[0]
    assert flipped["boxes"][0].tolist() == pytest.approx([48, 0, 64, 32])
    assert float(flipped["image"][:, :, 48:].mean()) == pytest.approx(1.0)
