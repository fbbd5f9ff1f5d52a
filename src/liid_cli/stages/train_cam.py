"""Stage 2, `liid train-cam`: the multi-label CAM classifier, then CAM scores of every proposal.

Reads the data set index (image labels, images) and `<run>/proposals/proposals.h5`; writes
`<run>/cam/cam.pt` (checkpoint), `<run>/cam/cam_scores.h5` (`liid.cam_scores/2`, rows aligned with
proposals.h5: `cam_box_scores` and `cam_mask_scores` (M, K) = mean + max of the CAM inside the box /
mask, `cam_mask_agreement` (M, K) = how well the mask matches the CAM, for the image's labelled
classes, 0 for the others) and, with `save_cams`, heat-map PNGs in
`<run>/cam/cams/`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field

from liid_cli import artifacts
from liid_cli.checkpoints import save_checkpoint, seed_everything
from liid_cli.config import Positive
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256
from liid_cli.h5store import write_csr
from liid_cli.log import log, track
from liid_cli.models.backbones import TrunkConfig, image_to_tensor
from liid_cli.models.cam import CamClassifier, normalised_cams
from liid_cli.models.cam_scoring import cam_input, heat_map, proposal_scores, scoring_size
from liid_cli.models.optim import OptimizerName, make_optimizer
from liid_cli.proposals.store import open_proposals, proposals_path
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stage_inputs import WEIGHTS


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
        labels = torch.from_numpy(self.index.classes.label_vector(image["labels"])[1:])
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
            {"params": model.classifier.parameters(), "lr": config.head_lr_mult * config.lr},
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


@torch.no_grad()
def score_proposals(
    model: CamClassifier, index: DatasetIndex, config: TrainCamConfig, context: StageContext
) -> dict[str, Any]:
    """CAM box and mask scores of every proposal, written row-aligned with proposals.h5."""
    model.eval()
    num_classes = index.classes.num_classes
    images_by_id = {int(image["id"]): image for image in index.images}
    columns: dict[str, list[np.ndarray]] = {
        artifacts.H5_CAM_BOX_SCORES: [],
        artifacts.H5_CAM_MASK_SCORES: [],
        artifacts.H5_CAM_MASK_AGREEMENT: [],
    }
    counts, image_ids = [], []
    correct_labels, saved = 0, 0
    cams_dir = context.out_dir / artifacts.CAM_MAPS_DIR
    with open_proposals(context.run_dir, context.index_path) as store:
        missing = set(images_by_id) - {int(i) for i in store.image_ids}
        if missing:
            raise LiidError(
                f"{proposals_path(context.run_dir)}: no proposals for {len(missing)} images of "
                f"{context.index_path}; rerun `liid proposals --run {context.run_dir} --force`"
            )
        for proposals in track(store, "CAM scores", total=len(store)):
            image = images_by_id[proposals.image_id]
            rgb = read_rgb(index.image_path(image))
            classes = [k - 1 for k in index.labels(image)]
            tensor = cam_input(
                rgb, model.trunk.stride, config.input_size, config.cam_scale, config.keep_aspect
            ).to(context.device)
            logits, cams = normalised_cams(
                model, tensor, classes, scoring_size(rgb.shape[:2], config.score_side),
                config.cam_flip_average,
            )
            truth = torch.from_numpy(index.classes.label_vector(image["labels"])[1:]).to(
                logits.device
            )
            correct_labels += int(((logits > 0).float() == truth).sum())
            scores = proposal_scores(
                cams, proposals.boxes, proposals.masks(), classes, num_classes
            )
            for rows, column in zip(columns.values(), scores):
                rows.append(column)
            counts.append(len(proposals))
            image_ids.append(proposals.image_id)
            if config.save_cams and saved < config.save_cams_max:
                cams_dir.mkdir(exist_ok=True)
                for cam, k in zip(cams.cpu().numpy(), classes):
                    Image.fromarray(heat_map(rgb, cam)).save(
                        cams_dir / f"{image['name']}_{index.classes.names[k]}.png"
                    )
                saved += 1
    write_csr(
        context.out_dir / artifacts.CAM_SCORES_H5,
        schema=artifacts.SCHEMA_CAM_SCORES,
        fingerprint=file_sha256(context.index_path),
        image_ids=np.array(image_ids),
        counts=np.array(counts),
        rows={name: _stack(rows, num_classes) for name, rows in columns.items()},
        attrs={artifacts.H5_PROPOSALS_SHA_ATTR: file_sha256(proposals_path(context.run_dir))},
    )
    return {
        "proposals_scored": int(sum(counts)),
        "images": len(counts),
        "train_label_accuracy": correct_labels / max(1, len(counts) * num_classes),
    }


def _stack(rows: list[np.ndarray], num_classes: int) -> np.ndarray:
    return (
        np.concatenate(rows).astype(np.float32)
        if rows
        else np.zeros((0, num_classes), dtype=np.float32)
    )


def run(config: TrainCamConfig, context: StageContext) -> dict[str, Any]:
    """Train the CAM classifier on the index's image labels; score every proposal by its CAMs."""
    seed_everything(context.seed)
    index = load_index(context.index_path)
    if not index.images:
        raise LiidError(f"{context.index_path}: no images to train on")
    model, final_loss = train_classifier(index, config, context, "train-cam")
    save_checkpoint(
        context.out_dir / artifacts.CAM_CHECKPOINT,
        {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "config": config.model_dump(mode="json"),
            "class_names": list(index.classes.names),
            "epoch": config.epochs,
        },
    )
    metrics = score_proposals(model, index, config, context)
    return {"final_bce": final_loss, **metrics}


SPEC = StageSpec(
    name="train-cam",
    config_model=TrainCamConfig,
    run=run,
    inputs=(WEIGHTS,),
)
