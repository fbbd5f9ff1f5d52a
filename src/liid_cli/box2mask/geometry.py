"""Box geometry for box-to-mask: clipping, context windows, crops and pasting masks back.

A crop is the object's box grown by a context margin on every side (a *window*), resampled to a
fixed square size, so the network sees every object at one scale. Coordinates are continuous
pixels: pixel (row i, column j) covers [j, j+1) x [i, i+1).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def clip_boxes(
    boxes: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip xyxy boxes to the image; return (clipped, was_clipped, is_empty).

    A box is empty when, after clipping, it is less than one pixel wide or tall.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    limits = np.array([width, height, width, height], dtype=np.float32)
    clipped = np.clip(boxes, 0.0, limits)
    was_clipped = np.any(np.abs(clipped - boxes) > 1e-3, axis=1)
    is_empty = (clipped[:, 2] - clipped[:, 0] < 1.0) | (clipped[:, 3] - clipped[:, 1] < 1.0)
    return clipped, was_clipped, is_empty


def context_windows(
    boxes: torch.Tensor,
    context: float,
    jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Grow xyxy boxes by `context` x their size on each side; jitter each margin by +-jitter."""
    sizes = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    margins = torch.full_like(boxes, context)
    if jitter > 0:
        noise = torch.rand(boxes.shape, generator=generator, device=boxes.device) * 2 - 1
        margins = margins * (1 + jitter * noise)
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], device=boxes.device)
    return boxes + sign * margins * sizes


def box_channel(boxes: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """(M, 1, size, size): ones where a crop pixel's centre lies inside its box."""
    steps = (torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5) / size
    xs = windows[:, 0:1] + steps * (windows[:, 2:3] - windows[:, 0:1])
    ys = windows[:, 1:2] + steps * (windows[:, 3:4] - windows[:, 1:2])
    inside_x = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
    inside_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def crop(planes: torch.Tensor, windows: torch.Tensor, size: int) -> torch.Tensor:
    """Resample (C, H, W) planes inside each window to (M, C, size, size); zeros outside the image."""
    rois = torch.cat([windows.new_zeros(len(windows), 1), windows], dim=1)
    return roi_align(
        planes[None].float(),
        rois,
        output_size=size,
        spatial_scale=1.0,
        sampling_ratio=2,
        aligned=True,
    )


def paste(crops: torch.Tensor, windows: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of `crop` for (M, 1, s, s) maps: (M, H, W) in image coordinates, zero outside windows."""
    if len(crops) == 0:
        return crops.new_zeros(0, height, width)
    xs = torch.arange(width, device=crops.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=crops.device, dtype=torch.float32) + 0.5
    u = 2 * (xs[None] - windows[:, 0:1]) / (windows[:, 2:3] - windows[:, 0:1]) - 1
    v = 2 * (ys[None] - windows[:, 1:2]) / (windows[:, 3:4] - windows[:, 1:2]) - 1
    grid = torch.stack(torch.broadcast_tensors(u[:, None, :], v[:, :, None]), dim=-1)
    return F.grid_sample(
        crops.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[:, 0]


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(M, H, W) bool: pixels whose centre lies inside each xyxy box."""
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])
    return inside_y[:, :, None] & inside_x[:, None, :]
