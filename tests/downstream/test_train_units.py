"""Downstream training pieces on tiny inputs with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liid_cli.data.index import load_index
from liid_cli.downstream.instance_data import (
    InstanceDataset,
    boxes_from_masks,
    load_instance_records,
)
from liid_cli.downstream.models import (
    InstanceModelConfig,
    SemanticModelConfig,
    build_instance_model,
    build_semantic_model,
)
from liid_cli.downstream.semantic_data import SemanticDataset, load_semantic_records, read_label_map
from liid_cli.downstream.training import TrainingConfig, lr_factor
from liid_cli.errors import LiidError
from liid_cli.palette import IGNORE_LABEL, save_label_png

SCHEDULE = {
    "weights": "none",
    "epochs": 10,
    "batch_size": 2,
    "lr": 0.1,
    "lr_reference_batch": 2,
    "optimizer": "sgd",
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "step",
    "milestones": [5, 8],
    "gamma": 0.1,
    "poly_power": 1.0,
    "warmup_iters": 4,
    "warmup_factor": 0.2,
    "clip_grad_norm": 0.0,
    "flip": 0.5,
    "amp": False,
    "val_every": 1,
}


def test_warmup_then_step_schedule() -> None:
    factor = lr_factor(TrainingConfig(**SCHEDULE), iters_per_epoch=10)
    assert factor(0) == pytest.approx(0.2)
    assert factor(2) == pytest.approx(0.6)  # halfway from 0.2 to 1
    assert factor(4) == pytest.approx(1.0)
    assert factor(49) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(0.1)  # milestone at epoch 5 = iteration 50
    assert factor(80) == pytest.approx(0.01)


@pytest.mark.parametrize(("schedule", "halfway"), [("cosine", 0.5), ("poly", 0.5)])
def test_cosine_and_poly_reach_half_at_midpoint_and_zero_at_end(
    schedule: str, halfway: float
) -> None:
    factor = lr_factor(TrainingConfig(**(SCHEDULE | {"schedule": schedule, "warmup_iters": 0})), 10)
    assert factor(0) == pytest.approx(1.0)
    assert factor(50) == pytest.approx(halfway)
    assert factor(100) == pytest.approx(0.0)


def test_boxes_from_masks_are_tight_and_exclusive() -> None:
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 5, 7] = True
    assert boxes_from_masks(masks).tolist() == [[2, 1, 5, 3], [7, 5, 8, 6]]


def test_flip_mirrors_image_masks_and_boxes(tiny_demo: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    records = load_instance_records(index, tiny_demo / "gt_train.json")
    plain_image, plain = InstanceDataset(records, 0.0)[0]
    flipped_image, flipped = InstanceDataset(records, 1.0)[0]
    width = plain_image.shape[-1]
    assert torch.equal(flipped_image, plain_image.flip(-1))
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))
    expected = plain["boxes"].clone()
    expected[:, [0, 2]] = width - plain["boxes"][:, [2, 0]]
    assert torch.equal(flipped["boxes"], expected)


def test_records_keep_annotated_images_with_internal_labels(tiny_demo: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    ground_truth = json.loads((tiny_demo / "gt_train.json").read_text())
    records = load_instance_records(index, tiny_demo / "gt_train.json")
    annotated = {a["image_id"] for a in ground_truth["annotations"]}
    assert {r.image_id for r in records} == annotated
    first = ground_truth["annotations"][0]
    record = next(r for r in records if r.image_id == first["image_id"])
    assert index.classes.to_category(record.labels[0]) == first["category_id"]


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_empty_annotations_file_is_a_clear_error(tiny_demo: Path, tmp_path: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    ground_truth = json.loads((tiny_demo / "gt_train.json").read_text())
    empty = _write(tmp_path / "empty.json", ground_truth | {"annotations": []})
    with pytest.raises(LiidError, match="no annotations to train on"):
        load_instance_records(index, empty)


def test_unknown_category_is_a_clear_error(tiny_demo: Path, tmp_path: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    ground_truth = json.loads((tiny_demo / "gt_train.json").read_text())
    ground_truth["annotations"][0]["category_id"] = 99
    with pytest.raises(LiidError, match="category_id 99"):
        load_instance_records(index, _write(tmp_path / "bad.json", ground_truth))


def test_images_missing_on_disk_are_a_clear_error(tiny_demo: Path, tmp_path: Path) -> None:
    data = json.loads((tiny_demo / "index_train.json").read_text())
    data["info"]["image_root"] = str(tmp_path / "nowhere")
    index_path = _write(tmp_path / "index_train.json", data)
    with pytest.raises(LiidError, match="missing on disk"):
        load_instance_records(load_index(index_path), tiny_demo / "gt_train.json")


def test_semantic_labels_from_json_and_from_pngs_agree(tiny_demo: Path, tmp_path: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    from_json = load_semantic_records(index, tiny_demo / "gt_train.json", annotated_only=False)
    folder = tmp_path / "semantic"
    folder.mkdir()
    for record in from_json:
        save_label_png(folder / f"{record.name}.png", read_label_map(record, index))
    from_pngs = load_semantic_records(index, folder, annotated_only=False)
    for a, b in zip(from_json, from_pngs):
        assert np.array_equal(read_label_map(a, index), read_label_map(b, index))
    assert any(read_label_map(r, index).max() > 0 for r in from_pngs)


def test_label_above_class_count_is_a_clear_error(tiny_demo: Path, tmp_path: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    folder = tmp_path / "semantic"
    folder.mkdir()
    for image in index.images:
        save_label_png(
            folder / f"{image['name']}.png", np.full((image["height"], image["width"]), 9)
        )
    record = load_semantic_records(index, folder, annotated_only=False)[0]
    with pytest.raises(LiidError, match="label 9 exceeds the 6 classes"):
        read_label_map(record, index)


def test_semantic_crops_pad_with_ignore(tiny_demo: Path) -> None:
    index = load_index(tiny_demo / "index_train.json")
    records = load_semantic_records(index, tiny_demo / "gt_train.json", annotated_only=True)
    crop = 3 * max(index.images[0]["height"], index.images[0]["width"])
    image, labels = SemanticDataset(records[:1], index, crop, (1.0, 1.0), 0.0)[0]
    assert image.shape == (3, crop, crop) and labels.shape == (crop, crop)
    assert (labels == IGNORE_LABEL).sum() > labels.numel() / 2


BACKBONES = [("tf_efficientnet_lite0", "frozen_bn"), ("resnet18", "gn")]


def _instance_config(backbone: str, norm: str) -> InstanceModelConfig:
    return InstanceModelConfig(
        backbone=backbone,
        norm=norm,
        fpn_channels=32,  # GroupNorm heads: a multiple of 32
        box_head_size=32,
        anchor_sizes=[16, 32, 64, 128, 256],
        train_sizes=[64],
        max_size=96,
        rpn_pre_nms_train=10,
        rpn_post_nms_train=10,
        rpn_pre_nms_test=10,
        rpn_post_nms_test=10,
        box_batch_size_per_image=8,
        roi_canonical_scale=64,
        mask_head_channels=32,
        mask_head_layers=1,
        score_threshold=0.0,
        mask_threshold=0.5,
        detections_per_image=5,
    )


def _semantic_config(backbone: str, norm: str, stride: int = 16) -> SemanticModelConfig:
    return SemanticModelConfig(
        backbone=backbone, norm=norm, output_stride=stride, atrous_rates=[1, 2, 3]
    )


@pytest.mark.parametrize(("backbone", "norm"), BACKBONES)
def test_mask_rcnn_trains_and_predicts_on_any_backbone(backbone: str, norm: str) -> None:
    torch.manual_seed(0)
    model = build_instance_model(_instance_config(backbone, norm), 3, "none")
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 10:40, 20:50] = 1
    target = {"boxes": boxes_from_masks(masks.bool()), "labels": torch.tensor([2]), "masks": masks}
    losses = model.train()([torch.rand(3, 64, 64)], [target])
    assert {"loss_classifier", "loss_mask", "loss_rpn_box_reg"} <= set(losses)
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    with torch.no_grad():
        (output,) = model.eval()([torch.rand(3, 64, 80)])
    assert output["masks"].shape[1:] == (1, 64, 80) and len(output["boxes"]) <= 5


@pytest.mark.parametrize(("backbone", "norm"), BACKBONES)
@pytest.mark.parametrize("stride", [8, 16])
def test_deeplab_logits_match_input_size(backbone: str, norm: str, stride: int) -> None:
    model = build_semantic_model(_semantic_config(backbone, norm, stride), 3, "none").eval()
    x = torch.rand(1, 3, 64, 80)
    assert model.backbone(x)["out"].shape[-2:] == (64 // stride, 80 // stride)
    assert model(x)["out"].shape == (1, 4, 64, 80)


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(LiidError, match="unknown backbone 'resnet9000'"):
        build_semantic_model(_semantic_config("resnet9000", "bn"), 3, "none")


@pytest.mark.parametrize(
    ("backbone", "norm"),
    [("tf_efficientnet_lite0", "bn"), ("resnet18", "gn"), ("resnet18", "frozen_bn"),
     ("tf_efficientnet_lite0", "frozen_bn")],
)
def test_weights_of_a_trained_mask_rcnn_start_deeplab_and_back(
    tmp_path: Path, backbone: str, norm: str
) -> None:
    """`--weights <run>/train/model_best.pt`: the backbone part is found under its prefix."""
    detector = build_instance_model(_instance_config(backbone, norm), 6, "none")
    path = tmp_path / "model_best.pt"
    torch.save({"task": "instance", "model": detector.state_dict()}, path)
    deeplab = build_semantic_model(_semantic_config(backbone, norm), 6, str(path))
    assert _same_tensors(deeplab.backbone.trunk.state_dict(), detector.backbone.trunk.state_dict())
    torch.save({"task": "semantic", "model": deeplab.state_dict()}, path)
    again = build_instance_model(_instance_config(backbone, norm), 6, str(path))
    assert _same_tensors(again.backbone.trunk.state_dict(), deeplab.backbone.trunk.state_dict())
    # A pretrained frozen-BN detector keeps its stem and level 1 fixed.
    fixed = [p for p in again.backbone.trunk.parameters() if not p.requires_grad]
    assert bool(fixed) == (norm == "frozen_bn")
    assert len(fixed) < len(list(again.backbone.trunk.parameters()))


def _same_tensors(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> bool:
    shared = set(ours) & set(theirs)
    return bool(shared) and all(torch.equal(ours[key], theirs[key]) for key in shared)
