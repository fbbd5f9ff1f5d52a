"""Learned proposal masks (`liid proposals --refine-masks BOX2MASK.pt`): each kept proposal's
bottom-up mask is replaced by the box-to-mask model's mask of the proposal's box.

Refinement runs after the proposal filter, on the top-N only: the filter sees thousands of
hierarchy regions per image, and a network pass for each would cost far more than the search.
Two kept proposals with (nearly) the same box get (nearly) the same learned mask, so the filter
runs again on the refined masks: near-duplicates are dropped and diversity ranking is redone,
with the same settings as the bottom-up pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liid_cli import masks as mask_ops
from liid_cli.box2mask.inference import Box2MaskModel, load_box2mask, refine_masks, seen_classes
from liid_cli.errors import LiidError
from liid_cli.proposals.filtering import FilterSettings, MaskCandidates, select


@dataclass(frozen=True)
class RefineSettings:
    model: Path  # a 4-channel checkpoint of `liid train-box2mask`
    device: str
    threshold: float  # foreground probability at or above which a pixel is in the mask
    clip_to_box: bool  # no mask pixel outside the proposal's box


def cached_model(path: Path, device: str) -> Box2MaskModel:
    """One load per worker process (chunks of the same run share it); a rewritten file reloads."""
    return _load(path, device, path.stat().st_mtime_ns if path.is_file() else 0)


@functools.lru_cache(maxsize=2)
def _load(path: Path, device: str, modified: int) -> Box2MaskModel:
    return load_box2mask(path, device)


def check_model(path: Path, device: str, class_names: list[str], allow_seen: bool) -> list[str]:
    """Load the model up front (so bad input fails before any work) and return the data set's
    classes whose masks it was trained on. A model that needs a score map per box is refused:
    proposals have no class, hence no CAM to give it."""
    model = cached_model(path, device)
    if model.uses_score_map:
        raise LiidError(
            f"{path}: this box-to-mask model takes a class score map per box "
            f"({model.in_channels} input channels), which proposals do not have; "
            "use the 4-channel model of `liid train-box2mask` (<run>/box2mask_model/box2mask.pt)"
        )
    seen = seen_classes(model, class_names)
    if seen and not allow_seen:
        raise LiidError(
            f"{path}: the box-to-mask model was trained on masks of {seen}, classes of this "
            "data set, so its proposals are not weakly supervised; train it on other classes, "
            "or pass --allow-seen-classes (recorded as weakly_supervised: false)"
        )
    return seen


def refine(
    settings: RefineSettings,
    filter_settings: FilterSettings,
    image: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Learned masks for the boxes of bool `masks` (M, H, W) ranked by `scores` (M,), filtered
    again: (K, H, W) bool and (K,) scores, K <= M."""
    if not len(masks):
        return masks, scores
    model = cached_model(settings.model, settings.device)
    boxes = np.stack([mask_ops.box_xyxy(mask) for mask in masks])
    refined = refine_masks(
        model, image, boxes, threshold=settings.threshold, clip_to_box=settings.clip_to_box
    )
    return select(MaskCandidates(refined, scores), filter_settings, *image.shape[:2])
