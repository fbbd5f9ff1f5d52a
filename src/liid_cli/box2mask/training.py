"""Training: crops of source objects for box-to-mask, and one loop shared with the semantic FCN.

`CropDataset` yields (input, target) per source object: the image, the box channel and optionally
the class score map, resampled inside a jittered context window, with a random horizontal flip.
`fit` runs a fixed number of iterations of pixel-wise cross-entropy, checkpointing to a resumable
state file so a failed stage continues where it stopped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from liid_cli import masks
from liid_cli.box2mask.data import SourceInstance
from liid_cli.box2mask.geometry import box_channel, context_windows, crop
from liid_cli.box2mask.network import SegmentationNet, build_box2mask_net, widen_input
from liid_cli.checkpoints import save_checkpoint
from liid_cli.data.images import read_rgb
from liid_cli.log import log, track
from liid_cli.palette import IGNORE_LABEL

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


def fit(
    net: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    iterations: int,
    batch_size: int,
    device: str,
    workers: int,
    state_path: Path,
    resume_key: str,
    checkpoint_every: int,
    description: str,
) -> float:
    """Train `net` in place for `iterations` steps; return the mean loss of the last tenth."""
    net.to(device)
    optimizer = make_optimizer(net)
    start, losses = 0, []
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state["resume_key"] == resume_key:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, losses = int(state["iteration"]), list(state["losses"])
            log.info(f"{description}: resuming at iteration {start} from {state_path}")
    sampler = RandomSampler(dataset, replacement=True, num_samples=(iterations - start) * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                        num_workers=workers if workers > 1 else 0)
    net.train()
    for step, (inputs, targets) in enumerate(track(loader, description), start=start + 1):
        logits = net(inputs.to(device))
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, targets.to(device), ignore_index=IGNORE_LABEL)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % checkpoint_every == 0 and step < iterations:
            save_checkpoint(state_path, {
                "resume_key": resume_key, "iteration": step, "losses": losses,
                "model": net.state_dict(), "optimizer": optimizer.state_dict(),
            })
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
    device: str,
    workers: int,
    state_path: Path,
    description: str,
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

    resume_key = repr(
        (sorted(config.items()), in_channels, iterations, score_dropout, len(instances))
    )
    final_loss = fit(
        net,
        dataset,
        make_optimizer=adam,
        iterations=iterations,
        batch_size=config["batch_size"],
        device=device,
        workers=workers,
        state_path=state_path,
        resume_key=resume_key,
        checkpoint_every=config["checkpoint_every"],
        description=description,
    )
    return net, final_loss
