"""Box-to-mask pieces on tiny arrays with known answers: geometry, baselines, network, data, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liid_cli import artifacts, masks
from liid_cli.box2mask.baselines import ellipse_masks, grabcut_masks, rect_masks
from liid_cli.box2mask.data import choose_target_classes, load_target_boxes
from liid_cli.box2mask.geometry import box_channel, clip_boxes, context_windows, crop, paste
from liid_cli.box2mask.inference import load_box2mask, masks_from_probabilities, refine_masks
from liid_cli.box2mask.network import (
    SegmentationNet,
    build_box2mask_net,
    input_channels_of,
    widen_input,
)
from liid_cli.box2mask.semantic import LabelledImage, label_map
from liid_cli.checkpoints import save_checkpoint
from liid_cli.data.index import load_index
from liid_cli.errors import LiidError
from liid_cli.evaluation.box_masks import class_mean_best_iou
from liid_cli.models.backbones import build_trunk

TINY_NET = {
    "encoder": "tf_efficientnet_lite0",
    "decoder_channels": 8,
    "crop_size": 32,
    "context": 0.25,
    "jitter": 0.0,
}


def test_clip_boxes_reports_clipped_and_empty() -> None:
    boxes = np.array(
        [[-5, 2, 10, 8], [2, 2, 6, 6], [12, 0, 20, 5], [3, 3, 3.5, 9]], dtype=np.float32
    )
    clipped, was_clipped, is_empty = clip_boxes(boxes, height=10, width=12)
    np.testing.assert_allclose(clipped[0], [0, 2, 10, 8])
    assert was_clipped.tolist() == [True, False, True, False]
    assert is_empty.tolist() == [False, False, True, True]  # outside the image; half a pixel wide


def test_context_window_and_box_channel() -> None:
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    window = context_windows(box, context=0.5)
    torch.testing.assert_close(window, torch.tensor([[0.0, 0.0, 40.0, 80.0]]))
    channel = box_channel(box, window, size=4)[0, 0]
    # crop pixel centres at 1/8, 3/8, 5/8, 7/8 of the window: the middle two rows/columns are inside
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = 1
    torch.testing.assert_close(channel, expected)


def test_crop_then_paste_recovers_the_mask_inside_the_window() -> None:
    mask = torch.zeros(1, 40, 50)
    mask[0, 10:30, 15:35] = 1
    window = torch.tensor([[5.0, 0.0, 45.0, 40.0]])
    cropped = crop(mask, window, size=40)
    pasted = paste(cropped, window, 40, 50)[0] >= 0.5
    assert torch.equal(pasted, mask[0].bool())


def test_rect_and_ellipse_baselines() -> None:
    image = np.zeros((50, 60, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 30, 45]], dtype=np.float32)
    assert rect_masks(image, boxes)[0].sum() == 20 * 40
    ellipse = ellipse_masks(image, boxes)[0]
    assert abs(ellipse.sum() - np.pi * 10 * 20) < 0.03 * np.pi * 10 * 20
    assert (
        not ellipse[5, 10]
        and ellipse[25, 20]
        and not (ellipse & ~rect_masks(image, boxes)[0]).any()
    )


def test_grabcut_finds_a_disc_in_its_box() -> None:
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, size=(80, 80, 3)).astype(np.uint8)
    ys, xs = np.mgrid[0:80, 0:80]
    disc = (ys - 40) ** 2 + (xs - 40) ** 2 <= 15**2
    image[disc] = [220, 200, 40]
    mask = grabcut_masks(image, np.array([[24, 24, 56, 56]], dtype=np.float32))[0]
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.85, iou


@pytest.mark.parametrize("encoder", ["tf_efficientnet_lite0", "resnet18"])
def test_network_predicts_at_stride_four_and_widening_changes_nothing(encoder: str) -> None:
    torch.manual_seed(0)
    config = TINY_NET | {"encoder": encoder}
    net = build_box2mask_net(config, in_channels=4).eval()
    assert input_channels_of(net.state_dict()) == 4
    x = torch.rand(2, 4, 64, 64)
    assert net(x).shape == (2, 2, 16, 16)
    wide = build_box2mask_net(config, in_channels=5).eval()
    wide.load_state_dict(widen_input(net.state_dict(), 5))
    assert input_channels_of(wide.state_dict()) == 5
    extra = torch.cat([x, torch.rand(2, 1, 64, 64)], dim=1)
    torch.testing.assert_close(wide(extra), net(x))


def test_pretrained_encoder_answers_rgb_as_before_widening(tmp_path: Path) -> None:
    """Extra input channels start at zero on loaded weights (here: a saved trunk's)."""
    torch.manual_seed(0)
    rgb = build_trunk("tf_efficientnet_lite0", "none", levels=(1, 2, 3, 4)).eval()
    path = tmp_path / "trunk.pt"
    torch.save(rgb.state_dict(), path)
    net = build_box2mask_net(TINY_NET, in_channels=5, weights=str(path)).eval()
    x = torch.rand(1, 3, 64, 64)
    boxed = torch.cat([x, torch.rand(1, 2, 64, 64)], dim=1)
    for ours, theirs in zip(net.encoder(boxed), rgb(x)):
        torch.testing.assert_close(ours, theirs)


def test_semantic_net_outputs_all_classes() -> None:
    net = SegmentationNet(
        encoder="tf_efficientnet_lite0", in_channels=3, num_outputs=7, decoder_channels=8
    )
    assert net(torch.rand(1, 3, 96, 64)).shape == (1, 7, 24, 16)


def _checkpoint(path: Path, in_channels: int, declared: int | None = None) -> Path:
    net = build_box2mask_net(TINY_NET, in_channels)
    save_checkpoint(
        path,
        {
            "schema": artifacts.SCHEMA_BOX2MASK,
            "model": net.state_dict(),
            "config": TINY_NET,
            "in_channels": declared or in_channels,
            "source_classes": ["ellipse"],
            "source_index": "index.json",
            "source_index_fingerprint": "x",
            "iterations": 1,
        },
    )
    return path


def test_checkpoint_with_other_channel_count_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LiidError, match="takes 3 input channels.*needs 4"):
        load_box2mask(_checkpoint(tmp_path / "three.pt", 3))
    with pytest.raises(LiidError, match="takes 4 input channels \\(checkpoint says 5\\)"):
        load_box2mask(_checkpoint(tmp_path / "lies.pt", 4, declared=5))
    save_checkpoint(tmp_path / "other.pt", {"model": {}})
    with pytest.raises(LiidError, match="not a box-to-mask checkpoint"):
        load_box2mask(tmp_path / "other.pt")


def test_refine_masks_checks_score_maps_and_stays_in_the_box(tmp_path: Path) -> None:
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 20, 30], [30, 10, 45, 35]], dtype=np.float32)
    four = load_box2mask(_checkpoint(tmp_path / "four.pt", 4))
    result = refine_masks(four, image, boxes)
    assert result.shape == (2, 40, 50) and result.any(axis=(1, 2)).all()
    assert not (result & ~rect_masks(image, boxes)).any()
    with pytest.raises(LiidError, match="takes no score map"):
        refine_masks(four, image, boxes, np.zeros((2, 40, 50), dtype=np.float32))
    five = load_box2mask(_checkpoint(tmp_path / "five.pt", 5))
    with pytest.raises(LiidError, match="takes a class score map"):
        refine_masks(five, image, boxes)
    assert refine_masks(five, image, boxes, np.ones((2, 40, 50), dtype=np.float32)).shape == (
        2,
        40,
        50,
    )


def test_masks_from_probabilities_thresholds_clips_and_falls_back() -> None:
    probabilities = np.zeros((2, 6, 6), dtype=np.float32)
    probabilities[0, 1:5, 1:5] = 0.9  # spills outside its box [2, 2, 6, 6)
    boxes = np.array([[2, 2, 6, 6], [0, 0, 2, 3]], dtype=np.float32)
    result, scores, fell_back = masks_from_probabilities(
        probabilities, boxes, threshold=0.5, clip_to_box=True
    )
    assert result[0].sum() == 9 and result[0, 2:5, 2:5].all()
    assert fell_back.tolist() == [False, True] and result[1].sum() == 6
    np.testing.assert_allclose(scores, [0.9, 0.0], atol=1e-6)


def test_seen_classes_are_refused_unless_allowed() -> None:
    classes = ["ellipse", "star", "ring"]
    assert choose_target_classes(classes, ["ellipse"], None, False, "index") == ["star", "ring"]
    assert choose_target_classes(classes, ["ellipse"], None, True, "index") == classes
    with pytest.raises(LiidError, match=r"refusing to label \['ellipse'\].*--allow-seen-classes"):
        choose_target_classes(classes, ["ellipse"], ["ellipse", "star"], False, "index")
    assert choose_target_classes(classes, ["ellipse"], ["ellipse"], True, "index") == ["ellipse"]
    with pytest.raises(LiidError, match="target_classes \\['moon'\\]"):
        choose_target_classes(classes, [], ["moon"], False, "index")


def test_target_boxes_from_coco_json_are_clipped_or_skipped(
    tiny_demo: Path, tmp_path: Path
) -> None:
    index = load_index(tiny_demo / "index_train.json")
    image = index.images[0]
    boxes = [
        {"image_id": image["id"], "category_id": 1, "bbox": [-10, -10, 30, 30], "score": 0.5},
        {"image_id": image["id"], "category_id": 2, "bbox": [5, 5, 0, 10]},
        {"image_id": image["id"], "category_id": 2, "bbox": [5, 5, 10, 10]},
    ]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    per_image, report = load_target_boxes(index, path)
    assert (report.read, report.clipped, report.empty) == (3, 1, 1)
    assert [b.box for b in per_image[image["id"]]] == [(0, 0, 20, 20), (5, 5, 15, 15)]
    assert per_image[image["id"]][0].score == 0.5
    path.write_text(json.dumps([{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 5, 5]}]))
    with pytest.raises(LiidError, match="image_id 99999 is not in"):
        load_target_boxes(index, path)


def test_class_mean_best_iou_by_hand() -> None:
    def rle(x0: int, x1: int) -> dict:
        mask = np.zeros((4, 10), dtype=bool)
        mask[:, x0:x1] = True
        return masks.encode(mask)

    ground_truth = [
        {"image_id": 1, "category_id": 1, "segmentation": rle(0, 4)},
        {"image_id": 1, "category_id": 1, "segmentation": rle(6, 10)},
        # COCO polygon truth (x, y pairs): the same rectangle as rle(0, 2)
        {"image_id": 1, "category_id": 2, "segmentation": [[0, 0, 2, 0, 2, 4, 0, 4]]},
    ]
    predictions = [
        {"image_id": 1, "category_id": 1, "segmentation": rle(0, 2)},  # IoU 0.5 with the first
        {"image_id": 1, "category_id": 2, "segmentation": rle(6, 10)},  # wrong class for the second
    ]
    names, sizes = {1: "a", 2: "b"}, {1: (4, 10)}
    per_class = class_mean_best_iou(ground_truth, predictions, names, sizes)
    assert per_class == {"a": pytest.approx(0.25), "b": 0.0}
    predictions.append({"image_id": 1, "category_id": 2, "segmentation": rle(0, 2)})
    assert class_mean_best_iou(ground_truth, predictions, names, sizes)["b"] == pytest.approx(1.0)


def test_label_map_paints_small_objects_last_and_ignores_boxes(tmp_path: Path) -> None:
    big = np.zeros((6, 6), dtype=bool)
    big[0:4, 0:4] = True
    small = np.zeros((6, 6), dtype=bool)
    small[1:3, 1:3] = True
    image = LabelledImage(
        tmp_path / "x.png",
        6,
        6,
        ((masks.encode(small), 2), (masks.encode(big), 1)),
        ((4.0, 4.0, 6.0, 6.0),),
    )
    labels = label_map(image)
    assert labels[1, 1] == 2 and labels[0, 0] == 1 and labels[5, 5] == 255 and labels[4, 0] == 0
