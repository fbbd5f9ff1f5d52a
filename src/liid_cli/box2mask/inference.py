"""A trained box-to-mask model: checkpoint format, loading, and `refine_masks` (boxes -> masks).

`refine_masks` is the entry point for other stages (e.g. LIID proposals): give it an image, xyxy
boxes and, for a model trained with score maps, one class score map per box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liid_cli import artifacts
from liid_cli.box2mask.geometry import box_masks, context_windows, paste
from liid_cli.box2mask.network import (
    IMAGE_AND_BOX,
    SegmentationNet,
    build_box2mask_net,
    input_channels_of,
)
from liid_cli.box2mask.training import object_inputs
from liid_cli.checkpoints import load_checkpoint
from liid_cli.errors import LiidError


def checkpoint_payload(
    net: SegmentationNet,
    config: dict[str, Any],
    source_classes: list[str],
    source_index: Path,
    source_fingerprint: str,
    iterations: int,
) -> dict[str, Any]:
    """Plain-typed checkpoint: weights, training config, and the source classes it has seen."""
    return {
        "schema": artifacts.SCHEMA_BOX2MASK,
        "model": net.state_dict(),
        "config": config,
        "in_channels": net.in_channels,
        "source_classes": list(source_classes),
        "source_index": str(source_index),
        "source_index_fingerprint": source_fingerprint,
        "iterations": iterations,
    }


@dataclass
class Box2MaskModel:
    net: SegmentationNet
    config: dict[str, Any]
    source_classes: tuple[str, ...]
    source_index: Path
    source_index_fingerprint: str
    path: Path | None = None

    @property
    def in_channels(self) -> int:
        return self.net.in_channels

    @property
    def uses_score_map(self) -> bool:
        return self.in_channels > IMAGE_AND_BOX

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


def _box2mask_payload(path: Path) -> dict[str, Any]:
    payload = load_checkpoint(path)
    if payload.get("schema") != artifacts.SCHEMA_BOX2MASK:
        raise LiidError(
            f"{path}: not a box-to-mask checkpoint ({artifacts.SCHEMA_BOX2MASK}); "
            "train one with `liid train-box2mask`"
        )
    return payload


def box2mask_source_classes(path: Path) -> tuple[str, ...]:
    """The classes a box-to-mask checkpoint learnt masks of (without building its network)."""
    return tuple(_box2mask_payload(path)["source_classes"])


def load_box2mask(path: Path, device: str = "cpu") -> Box2MaskModel:
    """Load a checkpoint from `liid train-box2mask` (or a later round); clear errors otherwise."""
    payload = _box2mask_payload(path)
    recorded, actual = int(payload["in_channels"]), input_channels_of(payload["model"])
    if recorded != actual or actual not in (IMAGE_AND_BOX, IMAGE_AND_BOX + 1):
        raise LiidError(
            f"{path}: the network takes {actual} input channels (checkpoint says {recorded}); "
            f"box-to-mask needs {IMAGE_AND_BOX} (image + box) or {IMAGE_AND_BOX + 1} (+ score map); "
            "retrain with `liid train-box2mask`"
        )
    net = build_box2mask_net(payload["config"], actual)
    net.load_state_dict(payload["model"])
    net.to(device).eval()
    return Box2MaskModel(
        net,
        payload["config"],
        tuple(payload["source_classes"]),
        Path(payload["source_index"]),
        payload["source_index_fingerprint"],
        path,
    )


def _check_score_maps(
    model: Box2MaskModel, score_maps: np.ndarray | None, shape: tuple[int, int, int]
) -> None:
    name = model.path or "the box-to-mask model"
    if model.uses_score_map and score_maps is None:
        raise LiidError(
            f"{name} takes a class score map per box ({model.in_channels} input channels) "
            "but none was given; use a model from `liid train-box2mask` (4 channels)"
        )
    if not model.uses_score_map and score_maps is not None:
        raise LiidError(
            f"{name} takes no score map ({model.in_channels} input channels) but score maps "
            "were given; pass none, or use a model trained with score maps"
        )
    if score_maps is not None and score_maps.shape != shape:
        raise LiidError(
            f"score maps of shape {score_maps.shape} do not match the boxes and image {shape}"
        )


@torch.no_grad()
def foreground_probabilities(
    model: Box2MaskModel,
    image: np.ndarray,
    boxes: np.ndarray,
    score_maps: np.ndarray | None = None,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """(M, H, W) float32 foreground probability of each box's object over the whole image."""
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    _check_score_maps(model, score_maps, (len(boxes), height, width))
    device = model.device
    rgb = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).to(device)
    size = model.config["crop_size"]
    result = np.zeros((len(boxes), height, width), dtype=np.float32)
    for start in range(0, len(boxes), batch_size):
        chunk = torch.from_numpy(boxes[start : start + batch_size]).to(device)
        windows = context_windows(chunk, model.config["context"])
        scores = None
        if score_maps is not None:
            scores = torch.from_numpy(score_maps[start : start + batch_size].astype(np.float32)).to(
                device
            )
        logits = model.net(object_inputs(rgb, chunk, windows, size, scores))
        foreground = torch.softmax(logits, dim=1)[:, 1:2]
        result[start : start + len(chunk)] = paste(foreground, windows, height, width).cpu().numpy()
    return result


def masks_from_probabilities(
    probabilities: np.ndarray, boxes: np.ndarray, *, threshold: float, clip_to_box: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks bool (M,H,W), scores (M,) = mean probability inside, fell_back (M,) bool).

    A mask that comes out empty falls back to its box, so every box yields an object.
    """
    height, width = probabilities.shape[1:]
    inside = box_masks(
        torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)), height, width
    ).numpy()
    masks = probabilities >= threshold
    if clip_to_box:
        masks &= inside
    fell_back = ~masks.any(axis=(1, 2))
    masks[fell_back] = inside[fell_back]
    area = np.maximum(masks.sum(axis=(1, 2)), 1)
    scores = (probabilities * masks).sum(axis=(1, 2)) / area
    return masks, scores.astype(np.float32), fell_back


def refine_masks(
    model: Box2MaskModel,
    image: np.ndarray,
    boxes: np.ndarray,
    score_maps: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    clip_to_box: bool = True,
) -> np.ndarray:
    """Learned masks for xyxy `boxes` in a uint8 (H, W, 3) image: bool (M, H, W).

    `score_maps` (M, H, W) in [0, 1], one per box (e.g. the CAM of the box's class), only for a
    model that takes them (`model.uses_score_map`).
    """
    probabilities = foreground_probabilities(model, image, boxes, score_maps)
    return masks_from_probabilities(
        probabilities, boxes, threshold=threshold, clip_to_box=clip_to_box
    )[0]


def seen_classes(model: Box2MaskModel, class_names: list[str]) -> list[str]:
    """The classes of a data set whose masks `model` was trained on: a run that lets the model
    label them is not weakly supervised, and must say so in its manifest."""
    return sorted(set(class_names) & set(model.source_classes))
