"""`liid pretrain`: a backbone fine-tuned on a labelled set, which --weights PATH loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from tests.helpers import assert_one_line_error, liid

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint
from liid_cli.models.backbones import build_trunk

TINY_PRETRAIN = ["--set", "input_size=48", "--set", "epochs=1", "--set", "batch_size=8"]


@pytest.fixture(scope="module")
def pretrained(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pretrain") / "run"
    result = liid("pretrain", "--run", run, "--data", tiny_demo / "index_train.json",
                  "--profile", "demo", *TINY_PRETRAIN, "-q")
    assert result.exit_code == 0, result.output
    return run


def test_pretrain_writes_a_backbone_that_weights_path_loads(pretrained: Path, tiny_demo: Path) -> None:
    manifest = json.loads((artifacts.stage_dir(pretrained, "pretrain") / artifacts.MANIFEST).read_text())
    assert manifest["inputs"]["val"]["path"] == str(tiny_demo / "index_val.json")
    accuracy = manifest["metrics"]["val_accuracy"]
    assert 0.0 <= accuracy["top1"] <= 1.0 and 0.0 <= accuracy["label"] <= 1.0
    path = artifacts.stage_dir(pretrained, "pretrain") / artifacts.PRETRAINED_BACKBONE
    saved = load_checkpoint(path)["model"]
    trunk = build_trunk("tf_efficientnet_lite0", str(path), output_stride=16)
    for name, value in trunk.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_train_cam_records_the_pretrained_weights_as_an_input(
    pretrained: Path, tiny_demo: Path, tmp_path: Path
) -> None:
    from tests.proposal_fixture import write_fake_proposals

    weights = artifacts.stage_dir(pretrained, "pretrain") / artifacts.PRETRAINED_BACKBONE
    run = tmp_path / "run"
    write_fake_proposals(run, tiny_demo / "index_train.json")
    result = liid("train-cam", "--run", run, "--data", tiny_demo / "index_train.json",
                  "--profile", "demo", "--weights", weights, "--set", "input_size=48",
                  "--set", "epochs=1", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((artifacts.stage_dir(run, "train-cam") / artifacts.MANIFEST).read_text())
    assert manifest["inputs"]["weights"]["path"] == str(weights)


def test_torchvision_trunks_keep_torchvision_names() -> None:
    trunk = build_trunk("resnet18", "none")
    missing, unexpected = torchvision.models.resnet18().load_state_dict(trunk.body.state_dict(), strict=False)
    assert unexpected == [] and sorted(missing) == ["fc.bias", "fc.weight"]


def test_pretrain_with_other_classes_for_validation_is_a_clear_error(
    tiny_demo: Path, tmp_path: Path
) -> None:
    index = json.loads((tiny_demo / "index_val.json").read_text())
    index["categories"][0]["name"] = "blob"
    other = tmp_path / "index_val.json"
    other.write_text(json.dumps(index))
    result = liid("pretrain", "--run", tmp_path / "run", "--data", tiny_demo / "index_train.json",
                  "--val", other, "--profile", "demo", *TINY_PRETRAIN, "-q")
    assert_one_line_error(result, str(other), "classes")


def test_weights_that_are_not_a_checkpoint_are_a_clear_error(tiny_demo: Path, tmp_path: Path) -> None:
    not_weights = tmp_path / "picture.pt"
    not_weights.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    result = liid("pretrain", "--run", tmp_path / "run", "--data", tiny_demo / "index_train.json",
                  "--weights", not_weights, "--profile", "demo", *TINY_PRETRAIN, "-q")
    assert_one_line_error(result, str(not_weights), "not a readable torch checkpoint")
    assert not (tmp_path / "run" / "pretrain").exists()
