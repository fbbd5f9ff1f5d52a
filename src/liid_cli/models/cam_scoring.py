"""CAM scores of an image's proposals at a bounded scoring size, and heat-map pictures.

CAMs are smooth (bilinear from a stride-16 map), so scoring at full resolution buys nothing but
time: a 640x480 photo is scored at `score_side` (its longer side), each mask weighted by the share
of every scoring cell it covers. Images no larger than `score_side` are scored at full size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

from liid_cli.models.backbones import image_to_tensor, input_size_of
from liid_cli.models.cam import box_regions, region_agreement, region_scores


def cam_input(
    rgb: np.ndarray, stride: int, input_size: int, cam_scale: float, keep_aspect: bool
) -> torch.Tensor:
    """The network input whose CAMs score an image: the training input side times `cam_scale`
    (at least one stride), squared or at that square's area with `keep_aspect`."""
    side = max(stride, round(input_size * cam_scale))
    return image_to_tensor(rgb, input_size_of(*rgb.shape[:2], side, keep_aspect))


def scoring_size(size: tuple[int, int], score_side: int) -> tuple[int, int]:
    """(height, width) scaled so the longer side is at most `score_side` (never enlarged)."""
    height, width = size
    scale = min(1.0, score_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def mask_coverage(masks: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(M, h, w) share of each cell of a `size` grid that each (M, H, W) bool mask covers (to
    1/255; OpenCV's area resampling of uint8 is 4x faster than torch's on float here)."""
    if tuple(masks.shape[1:]) == size:
        return torch.from_numpy(masks).float()
    height, width = size
    area = cv2.INTER_AREA
    scaled = [
        cv2.resize(mask.view(np.uint8) * np.uint8(255), (width, height), interpolation=area)
        for mask in masks
    ]
    return torch.from_numpy(np.stack(scaled)).float().div_(255.0)


def proposal_scores(
    cams: torch.Tensor, boxes: np.ndarray, masks: np.ndarray, classes: list[int], num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, K) box scores R, mask scores R and mask agreements of proposals ((M, 4) xyxy boxes and
    (M, H, W) bool masks at the image's size), from CAMs of the labelled `classes` at the scoring
    size; unlabelled classes' columns stay 0."""
    box_scores = np.zeros((len(masks), num_classes), dtype=np.float32)
    mask_scores = np.zeros_like(box_scores)
    agreement = np.zeros_like(box_scores)
    if len(masks) and classes:
        height, width = cams.shape[1:]
        image_height, image_width = masks.shape[1:]
        scale = np.array([width / image_width, height / image_height] * 2, np.float32)
        regions = box_regions(boxes * scale, height, width)
        boxes_grid = torch.from_numpy(regions)
        regions_grid = mask_coverage(masks, (height, width)).to(cams.device)
        box_scores[:, classes] = region_scores(cams, boxes_grid.to(cams.device)).cpu().numpy()
        mask_scores[:, classes] = region_scores(cams, regions_grid).cpu().numpy()
        agreement[:, classes] = region_agreement(cams, regions_grid).cpu().numpy()
    return box_scores, mask_scores, agreement


def heat_map(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Blend a [0, 1] map, coloured blue -> green -> red, over a uint8 RGB image (resized to the
    map's size)."""
    if image.shape[:2] != cam.shape:
        resized = Image.fromarray(image).resize(cam.shape[::-1], Image.Resampling.BILINEAR)
        image = np.asarray(resized)
    value = cam[..., None]
    colour = np.clip(1.5 - np.abs(4.0 * value - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return (0.5 * image + 127.5 * colour).astype(np.uint8)
