"""Training: crops of source objects for box-to-mask, and one loop shared with the semantic FCN.

`CropDataset` yields (input, target) per source object: the image, the box channel and optionally
the class score map, resampled inside a jittered context window, with a random horizontal flip.
`fit` runs a fixed number of iterations of pixel-wise cross-entropy, saving a resume point every
`checkpoint_every` iterations so `--resume` continues a stage that stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from liid_cli import masks
from liid_cli.box2mask.data import SourceInstance
from liid_cli.box2mask.geometry import box_channel, context_windows, crop
from liid_cli.box2mask.network import SegmentationNet, build_box2mask_net, widen_input
from liid_cli.data.images import read_rgb
from liid_cli.log import log, track
from liid_cli.palette import IGNORE_LABEL
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext

IMAGE_CACHE_SIZE = 256  # decoded images kept per data loading process (objects share images)
ScoreMaps = dict[tuple[str, str], np.ndarray]  # (image_key, class name) -> (H, W) in [0, 1]


def image_key(path: Path) -> str:
    """One name per image file, however a data set index spells its path."""
    return str(path.resolve())


@dataclass(frozen=True)
class CropSettings:
    crop_size: int
    context: float
    jitter: float

    @classmethod
    def from_config(cls, config: dict[str, Any], *, train: bool) -> CropSettings:
        return cls(config["crop_size"], config["context"], config["jitter"] if train else 0.0)


def object_inputs(
    rgb: torch.Tensor,
    boxes: torch.Tensor,
    windows: torch.Tensor,
    size: int,
    score_maps: torch.Tensor | None,
) -> torch.Tensor:
    """(M, 4 or 5, size, size) network inputs: image crop in [0, 1], box channel, score crop.

    `rgb` is (3, H, W) 0..255; `score_maps` is (M, H, W), one map per object, or None.
    """
    image = crop(rgb.float() / 255.0, windows, size)
    parts = [image, box_channel(boxes, windows, size)]
    if score_maps is not None:
        parts.append(
            torch.cat(
                [crop(score_maps[m : m + 1], windows[m : m + 1], size) for m in range(len(windows))]
            )
        )
    return torch.cat(parts, dim=1)


@functools.lru_cache(maxsize=IMAGE_CACHE_SIZE)
def cached_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 tensor of an image file, cached."""
    return torch.from_numpy(read_rgb(path).copy()).permute(2, 0, 1)


class CropDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One training sample per source object; random window jitter and flip."""

    def __init__(
        self,
        instances: list[SourceInstance],
        settings: CropSettings,
        score_maps: ScoreMaps | None = None,
        score_dropout: float = 0.0,
    ) -> None:
        self.instances = instances
        self.settings = settings
        self.score_maps = score_maps
        self.score_dropout = score_dropout

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        instance = self.instances[item]
        size = self.settings.crop_size
        rgb = cached_rgb(instance.image_path)
        box = torch.tensor([instance.box], dtype=torch.float32)
        window = context_windows(box, self.settings.context, self.settings.jitter)
        score = None
        if self.score_maps is not None:
            score_map = self.score_maps[(image_key(instance.image_path), instance.class_name)]
            score = torch.from_numpy(score_map.astype(np.float32))[None]
            if torch.rand(()) < self.score_dropout:
                score = torch.zeros_like(score)
        inputs = object_inputs(rgb, box, window, size, score)[0]
        mask = torch.from_numpy(masks.decode(instance.rle)).float()[None]
        target = (crop(mask, window, size)[0, 0] >= 0.5).long()
        if torch.rand(()) < 0.5:
            inputs, target = inputs.flip(-1), target.flip(-1)
        return inputs, target


class DrawsWithReplacement(Sampler[int]):
    """`iterations * batch_size` indices drawn with replacement, the same stream as torch's
    RandomSampler(replacement=True), from a seed that a resume point keeps: a resumed run skips the
    `skip` indices it has trained on and draws the rest exactly as the uninterrupted run did."""

    CHUNK = 32  # RandomSampler draws its indices 32 at a time

    def __init__(self, size: int, total: int, seed: int | None = None, skip: int = 0) -> None:
        self.size, self.total, self.seed, self.skip = size, total, seed, skip

    def __len__(self) -> int:
        return self.total - self.skip

    def __iter__(self) -> Iterator[int]:
        if self.seed is None:  # a fresh run draws the seed where RandomSampler does
            self.seed = int(torch.empty((), dtype=torch.int64).random_().item())
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        for start in range(0, self.total, self.CHUNK):
            count = min(self.CHUNK, self.total - start)
            chunk = torch.randint(self.size, (count,), dtype=torch.int64, generator=generator)
            yield from chunk.tolist()[max(0, self.skip - start):]


def fit(
    net: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    iterations: int,
    batch_size: int,
    context: StageContext,
    resume_point: ResumePoint,
    checkpoint_every: int,
) -> float:
    """Train `net` in place for `iterations` steps; return the mean loss of the last tenth.

    A resumed run ends with the same weights as an uninterrupted one when the crops are drawn in
    this process (--workers 1); with worker processes their random draws start afresh.
    """
    device, description = context.device, resume_point.label
    net.to(device)
    optimizer = make_optimizer(net)
    resume_point = replace(resume_point, objects={"model": net, "optimizer": optimizer})
    state = resume_point.load() or {"iteration": 0, "losses": [], "draw_seed": None}
    start, losses = int(state["iteration"]), list(state["losses"])
    draws = DrawsWithReplacement(
        len(dataset), iterations * batch_size, state["draw_seed"], start * batch_size
    )
    # A fresh run's loader draws its seed from the global generator before the first step; a
    # resumed run must not, or every later draw shifts.
    generator = torch.Generator() if start else None
    workers = context.workers if context.workers > 1 else 0
    loader = DataLoader(dataset, batch_size=batch_size, sampler=draws, drop_last=True,
                        num_workers=workers, generator=generator)
    net.train()
    for step, (inputs, targets) in enumerate(track(loader, description), start=start + 1):
        logits = net(inputs.to(device))
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, targets.to(device), ignore_index=IGNORE_LABEL)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % checkpoint_every == 0 or step == iterations:
            resume_point.save(
                {"iteration": step, "losses": losses, "draw_seed": draws.seed},
                f"iteration {step}/{iterations}",
            )
    net.eval()
    tail = losses[-max(1, len(losses) // 10):]
    final = float(np.mean(tail)) if tail else float("nan")
    log.info(f"{description}: {iterations} iterations, final loss {final:.4f}")
    return final


def train_box2mask(
    config: dict[str, Any],
    instances: list[SourceInstance],
    *,
    in_channels: int,
    init_state: dict[str, Any] | None,
    score_maps: ScoreMaps | None,
    score_dropout: float,
    iterations: int,
    context: StageContext,
    resume_point: ResumePoint,
) -> tuple[SegmentationNet, float]:
    """Train the binary segmenter on source crops with Adam (the paper's optimiser for SegNet2).

    `config` is a train-box2mask config; `init_state` (e.g. the previous round's weights, widened
    to take the score map) starts the network, otherwise `config["weights"]` does.
    """
    if init_state is None:
        net = build_box2mask_net(config, in_channels, weights=config["weights"])
    else:
        net = build_box2mask_net(config, in_channels)
        net.load_state_dict(widen_input(init_state, in_channels))
    dataset = CropDataset(
        instances, CropSettings.from_config(config, train=True), score_maps, score_dropout
    )

    def adam(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
        )

    final_loss = fit(
        net,
        dataset,
        make_optimizer=adam,
        iterations=iterations,
        batch_size=config["batch_size"],
        context=context,
        resume_point=resume_point,
        checkpoint_every=config["checkpoint_every"],
    )
    return net, final_loss
