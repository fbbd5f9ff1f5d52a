"""Stage 3, `liid train-mil`: the MIL network trained with alpha L_Att + beta L_MIL + gamma L_Cent.

Reads the index, `<run>/proposals/proposals.h5` and `<run>/cam/cam_scores.h5` (and `cam.pt` with
`weights: cam`); writes `<run>/mil/mil.pt` (model, class centres, config, class names, epoch).
One image and its proposals per mini-batch. A checkpoint after every epoch in the stage's cache
folder lets `--resume` continue a run that stopped. Launched by `torchrun`, it trains with DDP
(images sharded across processes, class centres averaged after every step).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from liid_cli import artifacts, distributed
from liid_cli.checkpoints import load_checkpoint, save_checkpoint, seed_everything
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256
from liid_cli.h5store import open_csr
from liid_cli.log import log, track
from liid_cli.models.backbones import TrunkConfig
from liid_cli.models.losses import update_centres
from liid_cli.models.mil import (
    ClassCentres,
    LossConfig,
    MilNetwork,
    ProposalDataset,
    ProposalImage,
    image_losses,
    single_item,
)
from liid_cli.models.mil_parallel import average_centres, epoch_order
from liid_cli.models.optim import OptimizerName, make_optimizer
from liid_cli.proposals.store import open_proposals, proposals_path
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stage_inputs import WEIGHTS


class TrainMilConfig(TrunkConfig):
    """`weights` may also be `cam`: the train-cam classifier's backbone."""

    input_size: int = Field(ge=32)
    keep_aspect: bool  # the image at input_size**2 pixels, its aspect ratio kept (else a square)
    flip: bool
    roi_op: Literal["align", "pool"]
    roi_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    optimizer: OptimizerName
    lr: float = Field(gt=0)
    lr_step_epochs: int = Field(ge=1)  # the learning rate is divided by 10 after this many epochs
    momentum: float = Field(ge=0, lt=1)  # SGD only
    weight_decay: float = Field(ge=0)
    amp: bool
    loss: LossConfig


def training_images(
    index: DatasetIndex, context: StageContext, pooling: str
) -> list[ProposalImage]:
    """Every image with at least one proposal, with its boxes, label vector and CAM scores R."""
    images_by_id = {int(image["id"]): image for image in index.images}
    cam_path = artifacts.stage_dir(context.run_dir, "train-cam") / artifacts.CAM_SCORES_H5
    column = artifacts.H5_CAM_BOX_SCORES if pooling == "box" else artifacts.H5_CAM_MASK_SCORES
    fingerprint = file_sha256(context.index_path)
    items = []
    with (
        open_proposals(context.run_dir, context.index_path) as store,
        open_csr(cam_path, artifacts.SCHEMA_CAM_SCORES, fingerprint, "train-cam") as cams,
    ):
        made_from = cams.attrs.get(artifacts.H5_PROPOSALS_SHA_ATTR)
        if made_from != file_sha256(proposals_path(context.run_dir)) or not np.array_equal(
            cams.offsets, store.csr.offsets
        ):
            raise LiidError(
                f"{cam_path}: made from other proposals than {proposals_path(context.run_dir)}; "
                f"rerun `liid train-cam --run {context.run_dir} --force`"
            )
        scores = cams.column(column)
        for position, proposals in enumerate(store):
            image = images_by_id.get(proposals.image_id)
            if image is None or len(proposals) == 0:
                continue
            start = int(cams.offsets[position])
            items.append(
                ProposalImage(
                    image_id=proposals.image_id,
                    path=index.image_path(image),
                    labels=index.classes.label_vector(image["labels"]),
                    boxes=proposals.boxes,
                    cam_scores=scores[start : start + len(proposals)],
                )
            )
    if not items:
        raise LiidError(
            f"{proposals_path(context.run_dir)}: no image has proposals; nothing to train on"
        )
    return items


def build_network(config: TrainMilConfig, num_classes: int, run_dir: Path) -> MilNetwork:
    if config.weights != "cam":
        return MilNetwork(config, num_classes, config.roi_op, config.roi_size)
    network = MilNetwork(config, num_classes, config.roi_op, config.roi_size, weights="none")
    cam = load_checkpoint(artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_CHECKPOINT)
    if cam["config"]["backbone"] != config.backbone:
        raise LiidError(
            f"weights: cam needs the same backbone as train-cam ({cam['config']['backbone']}), "
            f"not {config.backbone}; set backbone or weights"
        )
    trunk = {k.removeprefix("trunk."): v for k, v in cam["model"].items() if k.startswith("trunk.")}
    network.trunk.load_state_dict(trunk)
    return network


def train_one_epoch(
    network: torch.nn.Module,
    centres: ClassCentres,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    config: TrainMilConfig,
    device: str,
    epoch: int,
    world: int,
) -> dict[str, float]:
    """One pass over the images, one image per step; returns the mean of each loss term."""
    network.train()
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    for step, item in enumerate(track(loader, f"train-mil epoch {epoch + 1}/{config.epochs}")):
        boxes = item["boxes"].to(device)
        labels = item["labels"].to(device)
        with torch.autocast(device_type="cuda", enabled=scaler.is_enabled()):
            logits, features = network(item["image"][None].to(device), [boxes])
        result = image_losses(
            logits, features, labels, item["cam_scores"].to(device), centres, config.loss
        )
        if not torch.isfinite(result.total):
            raise LiidError(
                f"train-mil: the loss became {result.total.item()} at epoch {epoch + 1}, step {step + 1} "
                f"(image id {item['image_id']}); lower `lr` (--set lr=...) or check the inputs"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result.total).backward()
        scaler.step(optimizer)
        scaler.update()
        if config.loss.centre:
            update_centres(
                centres.centres, centres.known, features.float(), result.assigned, config.loss.theta
            )
            if world > 1:
                average_centres(centres)
        sums["total"] += result.total.item()
        for name, value in result.parts.items():
            sums[name] += value.item()
        steps += 1
    return {name: value / max(steps, 1) for name, value in sums.items()}


def run(config: TrainMilConfig, context: StageContext) -> dict[str, Any]:
    """Train the MIL network on every image with proposals; save `mil.pt`."""
    if not (config.loss.attention or config.loss.mil or config.loss.centre):
        raise LiidError(
            "train-mil: every loss is switched off; turn on at least one of "
            "loss.attention, loss.mil, loss.centre"
        )
    rank, world, device = distributed.join(config, context)
    seed_everything(context.seed + rank)
    index = load_index(context.index_path)
    num_classes = index.classes.num_classes
    items = training_images(index, context, config.loss.pooling)
    network = build_network(config, num_classes, context.run_dir).to(device)
    centres = ClassCentres(num_classes, network.feature_dim).to(device)
    optimizer = make_optimizer(
        config.optimizer,
        [p for p in network.parameters() if p.requires_grad],
        config.lr,
        config.momentum,
        config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_step_epochs, gamma=0.1
    )
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.startswith("cuda"))
    resume_point = ResumePoint(context, "train-mil", objects={
        "model": network, "centres": centres, "optimizer": optimizer, "scheduler": scheduler,
        "scaler": scaler,
    })
    state = resume_point.load()
    start_epoch = int(state["epoch"]) if state else 0
    trained = network
    if world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            network, device_ids=[device] if device.startswith("cuda") else None
        )
    dataset = ProposalDataset(items, config.input_size, config.flip, keep_aspect=config.keep_aspect)
    means: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=1,
            sampler=epoch_order(len(items), epoch, context.seed, rank, world),
            collate_fn=single_item,
            num_workers=context.workers - 1,
        )
        means = train_one_epoch(
            trained, centres, loader, optimizer, scaler, config, device, epoch, world
        )
        scheduler.step()
        log.info(
            f"train-mil: epoch {epoch + 1}/{config.epochs} "
            + " ".join(f"{name} {value:.4f}" for name, value in means.items())
        )
        if rank == 0:
            resume_point.save({"epoch": epoch + 1}, f"epoch {epoch + 1}/{config.epochs}")
    save_checkpoint(
        context.out_dir / artifacts.MIL_CHECKPOINT,
        {
            "model": {k: v.cpu() for k, v in network.state_dict().items()},
            "centres": {k: v.cpu() for k, v in centres.state_dict().items()},
            "config": config.model_dump(mode="json"),
            "class_names": list(index.classes.names),
            "epoch": config.epochs,
            "feature_dim": network.feature_dim,
        },
    )
    return {
        "images": len(items),
        "start_epoch": start_epoch,
        "epochs": config.epochs,
        "world_size": world,
        **{f"final_{name}": value for name, value in means.items()},
        "centres_known": int(centres.known.sum()),
    }


SPEC = StageSpec(
    name="train-mil",
    config_model=TrainMilConfig,
    run=run,
    inputs=(WEIGHTS,),
)
