"""The shared training loop of the downstream models: `train_one_epoch` and `fit`.

`fit` handles what both tasks share: SGD (or AdamW) with warm-up and a step/cosine/poly
schedule, the learning rate scaled linearly with the total batch, AMP on GPU, DDP under
torchrun (rank 0 validates and writes), periodic validation, best/last checkpoints, and resuming
from the checkpoint kept in the stage's cache folder. Each epoch reseeds from (seed, epoch,
rank), so a resumed run draws the same batches and augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from liid_cli import artifacts, distributed
from liid_cli.checkpoints import save_checkpoint, seed_everything
from liid_cli.config import Count, StageConfig
from liid_cli.downstream.progress import training_progress
from liid_cli.errors import LiidError
from liid_cli.fileio import remove_path
from liid_cli.log import log
from liid_cli.models.optim import OptimizerName, make_optimizer
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext


class TrainingConfig(StageConfig):
    """Optimisation settings shared by `train` (instance) and `train-semantic`."""

    weights: str  # backbone initialisation: imagenet | none | PATH to a state dict
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)  # images per process and iteration
    lr: float = Field(gt=0)  # learning rate for `lr_reference_batch` images per iteration
    lr_reference_batch: int = Field(ge=1)
    optimizer: OptimizerName
    momentum: float = Field(ge=0, lt=1)  # SGD only
    weight_decay: float = Field(ge=0)
    schedule: Literal["step", "cosine", "poly"]
    milestones: list[Count]  # epochs at which `step` multiplies the rate by `gamma`
    gamma: float = Field(gt=0, le=1)
    poly_power: float = Field(gt=0)
    warmup_iters: int = Field(ge=0)
    warmup_factor: float = Field(gt=0, le=1)
    clip_grad_norm: float = Field(ge=0)  # 0 = off
    flip: float = Field(ge=0, le=1)  # probability of a horizontal flip
    amp: bool  # mixed precision, on GPU only
    val_every: int = Field(ge=0)  # epochs between validations (0: only after the last epoch)


@dataclass
class Task:
    """What differs between instance and semantic training."""

    model: nn.Module
    dataset: Dataset
    collate: Callable[[list[Any]], Any] | None
    compute_losses: Callable[[nn.Module, Any, torch.device], dict[str, torch.Tensor]]
    validate: Callable[[nn.Module, torch.device], dict[str, Any]] | None
    best_metric: str
    description: dict[str, Any]  # task, model config, classes: stored in every checkpoint


def lr_factor(config: TrainingConfig, iters_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base rate at iteration `step`: linear warm-up, then the schedule."""
    total = config.epochs * iters_per_epoch
    milestones = [m * iters_per_epoch for m in config.milestones]

    def factor(step: int) -> float:
        if step < config.warmup_iters:
            alpha = step / config.warmup_iters
            warm = config.warmup_factor * (1 - alpha) + alpha
        else:
            warm = 1.0
        progress = min(step / max(total, 1), 1.0)
        if config.schedule == "step":
            decay = config.gamma ** sum(step >= m for m in milestones)
        elif config.schedule == "cosine":
            decay = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            decay = (1 - progress) ** config.poly_power
        return warm * decay

    return factor


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    compute_losses: Callable[[nn.Module, Any, torch.device], dict[str, torch.Tensor]],
    clip_grad_norm: float,
    description: str,
    total: int,
) -> dict[str, float]:
    """One pass over `loader`; returns the mean of each loss term and of their sum (`loss`)."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    with training_progress(description, total, enabled=distributed.is_main()) as advance:
        for batch in loader:
            with torch.autocast(device.type, enabled=scaler.is_enabled()):
                losses = compute_losses(model, batch, device)
                loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise LiidError(
                    f"training diverged ({description}: loss {loss.item()}); "
                    "lower the learning rate, "
                    "e.g. --set lr=..., or raise warmup_iters"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            steps += 1
            for name, value in losses.items():
                sums[name] += float(value.detach())
            sums["loss"] += float(loss.detach())
            advance(sums["loss"] / steps, optimizer.param_groups[0]["lr"])
    return {name: value / max(steps, 1) for name, value in sums.items()}


def fit(task: Task, config: TrainingConfig, context: StageContext) -> dict[str, Any]:
    """Train, validate and write `model_best.pt` / `model_last.pt` into the stage folder."""
    _, world, device_name = distributed.join(config, context)
    device = torch.device(device_name)
    model = task.model.to(device)
    if world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    trained = model
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    sampler = DistributedSampler(
        task.dataset, num_replicas=world, rank=distributed.rank(), shuffle=True, seed=context.seed
    )
    drop_last = len(task.dataset) >= config.batch_size * world
    loader = DataLoader(
        task.dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=task.collate,
        num_workers=context.workers if context.workers > 1 else 0,
        drop_last=drop_last,
    )
    iters_per_epoch = len(loader)
    lr = config.lr * config.batch_size * world / config.lr_reference_batch
    optimizer = make_optimizer(
        config.optimizer,
        [p for p in model.parameters() if p.requires_grad],
        lr,
        config.momentum,
        config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, iters_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")

    resume_point = ResumePoint(context, "train", objects={
        "model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler,
    })
    state = resume_point.load()
    start_epoch, history, best = 0, [], {"epoch": None, "value": None, "metrics": None}
    best_path = context.cache_dir / artifacts.BEST_SO_FAR
    if state is None:
        remove_path(best_path)  # an interrupted run's best model is not this run's
    else:
        start_epoch, history, best = state["epoch"], state["history"], state["best"]
    log.info(
        f"training {iters_per_epoch} iterations per epoch x {config.epochs} epochs on {world} "
        f"process(es), {device}, lr {lr:g}"
    )

    for epoch in range(start_epoch, config.epochs):
        seed_everything(context.seed + 1000 * epoch + distributed.rank())
        sampler.set_epoch(epoch)
        losses = train_one_epoch(
            trained,
            loader,
            optimizer,
            scheduler,
            scaler,
            device,
            task.compute_losses,
            config.clip_grad_norm,
            f"epoch {epoch + 1}/{config.epochs}",
            iters_per_epoch,
        )
        validate_now = task.validate is not None and (
            epoch + 1 == config.epochs or (config.val_every and (epoch + 1) % config.val_every == 0)
        )
        if distributed.is_main():
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "losses": losses,
                "lr": scheduler.get_last_lr()[0],
            }
            if validate_now:
                record["val"] = task.validate(model, device)
                value = record["val"].get(task.best_metric)
                log.info(
                    f"epoch {epoch + 1}: loss {losses['loss']:.4f}, val {task.best_metric} "
                    f"{_format(value)}"
                )
                if value is not None and (best["value"] is None or value > best["value"]):
                    best = {"epoch": epoch + 1, "value": value, "metrics": record["val"]}
                    _save_model(best_path, model, task, epoch + 1, record["val"])
            else:
                log.info(f"epoch {epoch + 1}: loss {losses['loss']:.4f}")
            history.append(record)
            resume_point.save(
                {"epoch": epoch + 1, "history": history, "best": best},
                f"epoch {epoch + 1}/{config.epochs}",
            )
        distributed.barrier()

    if not distributed.is_main():
        return {}
    last_metrics = history[-1].get("val") if history else None
    _save_model(context.out_dir / artifacts.MODEL_LAST, model, task, config.epochs, last_metrics)
    if best_path.is_file():
        shutil.copyfile(best_path, context.out_dir / artifacts.MODEL_BEST)
    else:
        log.warning(
            "no validation split with ground truth: model_best.pt is the last epoch's model"
        )
        shutil.copyfile(
            context.out_dir / artifacts.MODEL_LAST, context.out_dir / artifacts.MODEL_BEST
        )
    return {
        "epochs": config.epochs,
        "iterations": config.epochs * iters_per_epoch,
        "processes": world,
        "train_images": len(task.dataset),
        "best_metric": task.best_metric,
        "best_epoch": best["epoch"],
        "best": best["metrics"],
        "last": last_metrics,
        "history": history,
    }


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _save_model(
    path: Path, model: nn.Module, task: Task, epoch: int, metrics: dict[str, Any] | None
) -> None:
    save_checkpoint(
        path, {**task.description, "epoch": epoch, "metrics": metrics, "model": model.state_dict()}
    )
