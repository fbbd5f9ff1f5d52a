"""Proposals of one image: the stage's settings, the candidate sources (selective search and the
importers), the filter, and learned masks for the kept boxes; selective search runs at a bounded
working size and the masks come back at full resolution.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from liid_cli.config import NonNegative, Positive, Probability, StageConfig
from liid_cli.data.images import read_rgb
from liid_cli.proposals import importers
from liid_cli.proposals.filtering import Candidates, FilterSettings, RegionCandidates, select
from liid_cli.proposals.objectness import add_cues
from liid_cli.proposals.refine import RefineSettings, refine
from liid_cli.proposals.selective_search import Strategy, selective_search
from liid_cli.proposals.store import ImageProposals
from liid_cli.proposals.working_size import full_size_proposals, working_image

Method = Literal["selective_search", "mcg", "rle_json", "label_png"]
Similarity = Literal["colour", "texture", "size", "fill"]


class SelectiveSearchConfig(StageConfig):
    colour_spaces: list[Literal["hsv", "lab", "rgb", "rgi"]] = Field(min_length=1)
    scales: list[Positive] = Field(min_length=1)
    similarity_sets: list[list[Similarity]] = Field(min_length=1)
    sigma: float = Field(ge=0)
    min_size_ratio: float = Field(ge=0)
    small_region_penalty: float = Field(ge=0)
    agreement_weight: NonNegative  # rank score + weight * other strategies forming the region
    agreement_iou: Probability  # mask IoU at which another strategy's region is the same region
    fill_weight: NonNegative  # rank score + weight * share of its box the region covers
    max_side: int = Field(ge=32)  # longer image side selective search works at


class RefineConfig(StageConfig):
    threshold: float = Field(gt=0, lt=1)
    clip_to_box: bool
    allow_seen_classes: bool


class ProposalsConfig(StageConfig):
    method: Method
    top_n: int = Field(ge=1)
    max_iou: float = Field(gt=0, le=1)
    diverse_iou: float = Field(gt=0, le=1)
    min_area: float = Field(ge=0, lt=1)
    max_area: float = Field(gt=0, le=1)
    selective_search: SelectiveSearchConfig
    refine: RefineConfig

    def filter_settings(self) -> FilterSettings:
        return FilterSettings(
            self.top_n, self.max_iou, self.diverse_iou, self.min_area, self.max_area
        )

    def strategies(self) -> list[Strategy]:
        search = self.selective_search
        return [
            Strategy(space, scale, tuple(similarities))
            for space, scale, similarities in itertools.product(
                search.colour_spaces, search.scales, search.similarity_sets
            )
        ]


@dataclass(frozen=True)
class ImageTask:
    """What one image needs: its index record, image file, and where imported proposals are."""

    record: dict[str, Any]
    image_path: Path
    source: Path | None  # importer input (file or folder); None for selective search
    rle_entries: importers.RleEntries  # the image's entries of an RLE json import
    refine: RefineSettings | None  # learned masks for the kept proposals' boxes; None: keep masks


def _selective_search(config: ProposalsConfig, image: np.ndarray, task: ImageTask) -> Candidates:
    search = config.selective_search
    hierarchies = selective_search(
        image, config.strategies(), search.sigma, search.min_size_ratio,
        search.small_region_penalty,
    )
    candidates = RegionCandidates(hierarchies)
    add_cues(
        candidates, float(image.shape[0] * image.shape[1]),
        agreement_weight=search.agreement_weight, agreement_iou=search.agreement_iou,
        fill_weight=search.fill_weight, area_range=(config.min_area, config.max_area),
    )
    return candidates


def _mcg(config: ProposalsConfig, image: np.ndarray, task: ImageTask) -> Candidates:
    path = importers.per_image_file(_source(task), task.record, ".mat")
    return RegionCandidates([importers.read_mcg(path, *image.shape[:2])])


def _label_png(config: ProposalsConfig, image: np.ndarray, task: ImageTask) -> Candidates:
    path = importers.per_image_file(_source(task), task.record, ".png")
    return RegionCandidates([importers.read_label_png(path, *image.shape[:2])])


def _rle_json(config: ProposalsConfig, image: np.ndarray, task: ImageTask) -> Candidates:
    return importers.rle_candidates(_source(task), task.rle_entries, *image.shape[:2])


def _source(task: ImageTask) -> Path:
    assert task.source is not None  # checked when the tasks are made
    return task.source


CANDIDATE_SOURCES: dict[str, Callable[[ProposalsConfig, np.ndarray, ImageTask], Candidates]] = {
    "selective_search": _selective_search,
    "mcg": _mcg,
    "rle_json": _rle_json,
    "label_png": _label_png,
}


def propose(
    config: ProposalsConfig, image: np.ndarray, task: ImageTask
) -> tuple[np.ndarray, np.ndarray]:
    """Filtered proposals of one decoded image: bool masks (K, H, W) best first, scores (K,)."""
    candidates = CANDIDATE_SOURCES[config.method](config, image, task)
    return select(candidates, config.filter_settings(), *image.shape[:2])


def proposals_for_image(config: ProposalsConfig, task: ImageTask) -> ImageProposals:
    """Selective search (and refining) at the working size; imported proposals at full size."""
    full = read_rgb(task.image_path)
    image = full
    if config.method == "selective_search":
        image = working_image(full, config.selective_search.max_side)
    masks, scores = propose(config, image, task)
    if task.refine is not None:
        masks, scores = refine(task.refine, config.filter_settings(), image, masks, scores)
    return full_size_proposals(task.record["id"], masks, scores, *full.shape[:2])
