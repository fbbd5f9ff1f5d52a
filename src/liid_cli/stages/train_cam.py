"""Stage 2, `liid train-cam`: the multi-label CAM classifier, then CAM scores of every proposal.

Reads the data set index (image labels, images) and `<run>/proposals/proposals.h5`; writes
`<run>/cam/cam.pt` (checkpoint), `<run>/cam/cam_scores.h5` (`liid.cam_scores/3`, rows aligned with
proposals.h5: `cam_box_scores` and `cam_mask_scores` (M, K) = mean + max of the CAM inside the box /
mask, `cam_mask_agreement` (M, K) = how well the mask matches the CAM, `cam_crop_scores` (M, K) =
the classifier's sigmoid on the box's crop, for the image's labelled classes, 0 for the others)
and, with `save_cams`, heat-map PNGs in `<run>/cam/cams/`.

The classifier depends on the images, their tags, its settings, the seed and the code, not on the
proposals: a rerun after new proposals reuses the finished run's classifier when all of those
match, and only scores the proposals again.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint, save_checkpoint, seed_everything
from liid_cli.config import Positive
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256, text_sha256
from liid_cli.log import log, track
from liid_cli.models.backbones import TrunkConfig, image_to_tensor
from liid_cli.models.cam import CamClassifier
from liid_cli.models.optim import OptimizerName, make_optimizer
from liid_cli.proposals.cam_scores import score_proposals
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext, StageSpec, code_version
from liid_cli.stage_inputs import WEIGHTS

BLANK_CAMS_WARNING = 0.05  # share of tagged classes' CAMs that are zero everywhere


class ClassifierConfig(TrunkConfig):
    """Training settings of a multi-label image classifier (train-cam, pretrain)."""

    input_size: int = Field(ge=32)
    scale_jitter: tuple[Positive, Positive]
    flip: bool
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    optimizer: OptimizerName
    lr: float = Field(gt=0)
    head_lr_mult: float = Field(gt=0)  # the classifier layer's rate = head_lr_mult * lr
    momentum: float = Field(ge=0, lt=1)  # SGD only
    weight_decay: float = Field(ge=0)
    amp: bool
    # A class bias after the pooling, started at the class's prior log-odds and trained: rare
    # classes' maps need not turn negative everywhere to say "absent" (models/cam.py).
    prior_bias: bool


class TrainCamConfig(ClassifierConfig):
    # CAMs for scoring are computed at input_size * cam_scale: a network trained at one size gives
    # sharper maps of the same image enlarged (more feature cells per object).
    cam_scale: float = Field(gt=0)
    keep_aspect: bool  # CAMs for scoring of the image at that size squared, aspect ratio kept
    # Proposals are scored on CAMs and masks at the image scaled to this longer side at most.
    score_side: int = Field(ge=16)
    cam_flip_average: bool
    save_cams: bool
    save_cams_max: int = Field(ge=0)
    crop_side: int = Field(ge=16)  # each proposal box's crop is squared to this side to be scored


class LabelledImages(torch.utils.data.Dataset):
    """Images resized to a square input, with their (K,) multi-hot labels; optional random flip."""

    def __init__(self, index: DatasetIndex, input_size: int, flip: bool) -> None:
        self.index = index
        self.input_size = input_size
        self.flip = flip

    def __len__(self) -> int:
        return len(self.index.images)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.index.images[position]
        tensor = image_to_tensor(read_rgb(self.index.image_path(image)), self.input_size)
        if self.flip and torch.rand(()) < 0.5:
            tensor = tensor.flip(-1)
        labels = torch.from_numpy(self.index.tag_vector(image))
        return tensor, labels


def jitter_size(input_size: int, scale_jitter: tuple[float, float], stride: int) -> int:
    """A random input size in input_size * [low, high], a multiple of the backbone stride."""
    scale = float(np.random.uniform(*scale_jitter))
    return max(stride, round(input_size * scale / stride) * stride)


def train_one_epoch(
    model: CamClassifier,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    config: ClassifierConfig,
    device: str,
    epoch: int,
    stage: str,
) -> float:
    """One pass of BCE training with scale jitter per mini-batch; returns the mean loss."""
    model.train()
    stride = model.trunk.stride
    total, count = 0.0, 0
    for step, (images, labels) in enumerate(
        track(loader, f"{stage} epoch {epoch + 1}/{config.epochs}")
    ):
        size = jitter_size(config.input_size, config.scale_jitter, stride)
        images = F.interpolate(
            images.to(device), size=(size, size), mode="bilinear", align_corners=False
        )
        with torch.autocast(device_type="cuda", enabled=scaler.is_enabled()):
            logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.to(device))
        if not torch.isfinite(loss):
            raise LiidError(
                f"{stage}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                "lower `lr` (--set lr=...) or check the images"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total += loss.item() * len(images)
        count += len(images)
    return total / max(count, 1)


def train_classifier(
    index: DatasetIndex, config: ClassifierConfig, context: StageContext, stage: str
) -> tuple[CamClassifier, float]:
    device = context.device
    model = CamClassifier(config, index.classes.num_classes).to(device)
    if config.prior_bias:
        model.start_bias_at_priors(np.stack([index.tag_vector(image) for image in index.images]))
    loader = torch.utils.data.DataLoader(
        LabelledImages(index, config.input_size, config.flip),
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=context.workers - 1,
        drop_last=len(index.images) > config.batch_size,
    )
    optimizer = make_optimizer(
        config.optimizer,
        [
            {"params": [p for p in model.trunk.parameters() if p.requires_grad]},
            {
                "params": [p for p in model.head_parameters() if p.requires_grad],
                "lr": config.head_lr_mult * config.lr,
            },
        ],
        config.lr,
        config.momentum,
        config.weight_decay,
    )
    total_steps = max(1, config.epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (1 - step / total_steps) ** 0.9
    )
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.startswith("cuda"))
    resume_point = ResumePoint(context, stage, objects={
        "model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler,
    })
    state = resume_point.load()
    start_epoch, loss = (int(state["epoch"]), float(state["loss"])) if state else (0, math.nan)
    for epoch in range(start_epoch, config.epochs):
        loss = train_one_epoch(
            model, loader, optimizer, scheduler, scaler, config, device, epoch, stage
        )
        log.info(f"{stage}: epoch {epoch + 1}/{config.epochs} BCE {loss:.4f}")
        resume_point.save({"epoch": epoch + 1, "loss": loss}, f"epoch {epoch + 1}/{config.epochs}")
    return model, loss


def classifier_key(config: TrainCamConfig, context: StageContext) -> str:
    """What the trained classifier depends on: its training settings, the seed, the data set
    index, the starting weights and the code (not the proposals, nor the scoring settings)."""
    weights = context.input(WEIGHTS)
    return text_sha256(json.dumps({
        "classifier": config.model_dump(mode="json", include=set(ClassifierConfig.model_fields)),
        "seed": context.seed,
        "index": file_sha256(context.index_path),
        "weights": None if weights is None else file_sha256(weights),
        "code": code_version(),
    }, sort_keys=True))


def finished_classifier(
    config: TrainCamConfig, context: StageContext, key: str, num_classes: int
) -> tuple[CamClassifier, float] | None:
    """The classifier of the run's finished train-cam when it was trained with the same `key`."""
    path = context.upstream("train-cam") / artifacts.CAM_CHECKPOINT
    if not path.is_file():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.get("classifier_key") != key:
        return None
    log.info(f"train-cam: reusing the classifier in {path}: same images, tags, settings, seed and "
             "code; only the proposals are scored again")
    model = CamClassifier(config, num_classes, weights="none")
    model.load_state_dict(checkpoint["model"])
    return model.to(context.device), float(checkpoint.get("final_bce", math.nan))


def run(config: TrainCamConfig, context: StageContext) -> dict[str, Any]:
    """Train the CAM classifier on the index's image labels; score every proposal by its CAMs."""
    seed_everything(context.seed)
    index = load_index(context.index_path)
    if not index.images:
        raise LiidError(f"{context.index_path}: no images to train on")
    key = classifier_key(config, context)
    trained = finished_classifier(config, context, key, index.classes.num_classes)
    model, final_loss = trained or train_classifier(index, config, context, "train-cam")
    save_checkpoint(
        context.out_dir / artifacts.CAM_CHECKPOINT,
        {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "config": config.model_dump(mode="json"),
            "class_names": list(index.classes.names),
            "epoch": config.epochs,
            "classifier_key": key,
            "final_bce": final_loss,
        },
    )
    metrics = score_proposals(
        model, index, config.model_dump(), run_dir=context.run_dir,
        index_path=context.index_path, out_dir=context.out_dir, device=context.device,
    )
    if metrics["blank_cams"] > BLANK_CAMS_WARNING:
        log.warning(
            f"train-cam: {100 * metrics['blank_cams']:.0f}% of the tagged classes' CAMs are zero "
            "everywhere (their proposals all score 0); try --set prior_bias=true or more epochs"
        )
    return {"final_bce": final_loss, **metrics}


SPEC = StageSpec(
    name="train-cam",
    config_model=TrainCamConfig,
    run=run,
    inputs=(WEIGHTS,),
)
