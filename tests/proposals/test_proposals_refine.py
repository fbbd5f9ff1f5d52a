"""`liid proposals --refine-masks BOX2MASK.pt` on the tiny demo set: learned masks replace the
bottom-up ones, boxes follow the masks, the model is an input of the stage, and models that
cannot be used here are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers import assert_one_line_error, liid

from liid_cli import artifacts, masks
from liid_cli.box2mask.inference import checkpoint_payload
from liid_cli.box2mask.network import build_box2mask_net
from liid_cli.checkpoints import save_checkpoint
from liid_cli.proposals.store import ImageProposals, open_proposals

TINY_NET = {
    "encoder": "tf_efficientnet_lite0",
    "decoder_channels": 8,
    "crop_size": 32,
    "context": 0.25,
}


def _saved_model(
    path: Path, *, in_channels: int = 4, source_classes: tuple[str, ...] = ("not-in-demo",)
) -> Path:
    """A box-to-mask checkpoint whose head says 'foreground' everywhere: the learned mask of a
    box is then exactly the box (masks are clipped to their box)."""
    net = build_box2mask_net(TINY_NET, in_channels)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 10.0]))
    save_checkpoint(
        path,
        checkpoint_payload(net, TINY_NET, list(source_classes), Path("source.json"), "x", 1),
    )
    return path


def _proposals(run_dir: Path, index: Path) -> list[ImageProposals]:
    with open_proposals(run_dir, index) as store:
        return list(store)


def _manifest(run_dir: Path) -> dict:
    return json.loads((artifacts.stage_dir(run_dir, "proposals") / artifacts.MANIFEST).read_text())


@pytest.fixture(scope="module")
def bottom_up(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("bottom_up")
    result = liid("proposals", "--data", tiny_demo / "index_val.json", "--run", run_dir,
                  "--profile", "demo", "--quiet")
    assert result.exit_code == 0, result.output
    return run_dir


def _box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    x0, y0, x1, y1 = box.astype(int)
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_box_model_turns_each_proposal_into_its_box_without_duplicates(
    tiny_demo: Path, tmp_path: Path, bottom_up: Path
) -> None:
    index = tiny_demo / "index_val.json"
    model = _saved_model(tmp_path / "box.pt")
    result = liid("proposals", "--data", index, "--run", tmp_path / "run", "--profile", "demo",
                  "--refine-masks", model, "--quiet")
    assert result.exit_code == 0, result.output
    before = {p.image_id: p for p in _proposals(bottom_up, index)}
    after = _proposals(tmp_path / "run", index)
    changed = 0
    for refined in after:
        original = before[refined.image_id]
        original_boxes = {tuple(box) for box in original.boxes.tolist()}
        refined_masks = refined.masks()
        # masks are the boxes of bottom-up proposals; stored boxes are the masks' boxes
        for mask, box in zip(refined_masks, refined.boxes, strict=True):
            assert tuple(box.tolist()) in original_boxes
            assert np.array_equal(masks.box_xyxy(mask), box)
            assert np.array_equal(mask, _box_mask(box, refined.height, refined.width))
        # two proposals with one box give one mask: the filter drops the duplicate
        assert len({tuple(box) for box in refined.boxes.tolist()}) == len(refined) <= len(original)
        flat = refined_masks.reshape(len(refined), -1).astype(np.int64)
        inter = flat @ flat.T
        iou = inter / (flat.sum(1)[:, None] + flat.sum(1)[None] - inter)
        assert np.all(iou[~np.eye(len(refined), dtype=bool)] <= 0.9)  # demo max_iou
        changed += int(not np.array_equal(refined_masks, original.masks()[: len(refined)]))
    assert changed == len(after)
    manifest = _manifest(tmp_path / "run")
    assert manifest["inputs"]["refine_masks"]["path"] == str(model)
    assert manifest["metrics"]["masks"] == "box2mask"
    assert manifest["metrics"]["weakly_supervised"] is True
    assert manifest["metrics"]["seen_classes"] == []
    assert _manifest(bottom_up)["metrics"]["masks"] == "bottom_up"


def test_trained_model_on_demo_classes_is_refused_unless_allowed(
    tiny_demo: Path, tmp_path: Path
) -> None:
    trained = liid("train-box2mask", "--data", tiny_demo / "index_train.json", "--run",
                   tmp_path / "b2m", "--profile", "demo", "--set", "iterations=2", "--set",
                   "batch_size=4", "--set", "checkpoint_every=1", "--quiet")
    assert trained.exit_code == 0, trained.output
    model = artifacts.stage_dir(tmp_path / "b2m", "train-box2mask") / artifacts.BOX2MASK_CHECKPOINT
    common = ("proposals", "--data", tiny_demo / "index_val.json", "--run", tmp_path / "run",
              "--profile", "demo", "--refine-masks", model, "--quiet")
    assert_one_line_error(liid(*common), "ellipse", "--allow-seen-classes")
    result = liid(*common, "--allow-seen-classes")
    assert result.exit_code == 0, result.output
    metrics = _manifest(tmp_path / "run")["metrics"]
    assert metrics["weakly_supervised"] is False
    assert metrics["seen_classes"] == ["ellipse", "rectangle", "triangle"]
    for proposals in _proposals(tmp_path / "run", tiny_demo / "index_val.json"):
        for mask, box in zip(proposals.masks(), proposals.boxes, strict=True):
            assert mask.any() and np.array_equal(masks.box_xyxy(mask), box)


def test_unusable_models_are_one_line_errors(tiny_demo: Path, tmp_path: Path) -> None:
    index = tiny_demo / "index_val.json"
    common = ("proposals", "--data", index, "--run", tmp_path / "run", "--profile", "demo",
              "--quiet")
    five = _saved_model(tmp_path / "five.pt", in_channels=5)
    assert_one_line_error(liid(*common, "--refine-masks", five), "five.pt", "score map")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert_one_line_error(liid(*common, "--refine-masks", garbage), "garbage.pt")
    assert_one_line_error(liid(*common, "--refine-masks", tmp_path / "missing.pt"), "missing.pt")
    assert_one_line_error(liid(*common, "--allow-seen-classes"), "--refine-masks")
    assert not artifacts.stage_dir(tmp_path / "run", "proposals").exists()
