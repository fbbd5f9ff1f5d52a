"""Stage 4, `liid dump`: the trained MIL network over every training image and its proposals.

Reads `<run>/mil/mil.pt`, the index and `<run>/proposals/proposals.h5`; writes `<run>/dump/dump.h5`
(`liid.dump/1`, CSR per image, rows in proposal order: `probs` float32 (M, K+1) softmax, `features`
float16 (M, D) (the MIL network's RoI features: the graph's), with `crop_features` also
`crop_features` float16 (M, D') (ImageNet embeddings of the proposal boxes' crops: the neighbours
whose scores vote in export-coco), `proposal_index` int32 (row within the image's proposals), `boxes` float32 (M, 4);
per image `labels` float32 (N, K+1) image label vector with background 1). Readers form the
label-masked probabilities probs * labels[image] (a switch of the cut).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint
from liid_cli.config import StageConfig
from liid_cli.data.images import read_rgb
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.fileio import file_sha256
from liid_cli.h5store import write_csr
from liid_cli.log import log, track
from liid_cli.models.backbones import trunk_settings
from liid_cli.models.crop_embedding import build_embedder, embed_boxes
from liid_cli.models.mil import MilNetwork, ProposalDataset, ProposalImage, stack_items
from liid_cli.proposals.store import ImageProposals, open_proposals, proposals_path
from liid_cli.runner import StageContext, StageSpec


class CropFeaturesConfig(StageConfig):
    backbone: str  # any timm model name, or resnet18/34/50/101 (torchvision)
    weights: str  # imagenet | PATH to a state dict of the whole classifier
    side: int = Field(ge=8)  # crops are squared to side x side pixels

    @field_validator("weights")
    @classmethod
    def pretrained_only(cls, weights: str) -> str:
        if weights == "none":
            raise ValueError(
                "crop embeddings need trained weights (imagenet or a PATH): random ones make "
                "meaningless neighbours; set crop_features=false to dump without them"
            )
        return weights


class DumpConfig(StageConfig):
    batch_size: int = Field(ge=1)  # images per forward pass
    amp: bool  # half precision on a GPU (features are stored as float16 anyway)
    crop_features: bool
    crops: CropFeaturesConfig


def load_network(context: StageContext) -> tuple[MilNetwork, dict[str, Any]]:
    checkpoint = load_checkpoint(
        artifacts.stage_dir(context.run_dir, "train-mil") / artifacts.MIL_CHECKPOINT
    )
    settings = checkpoint["config"]
    network = MilNetwork(
        trunk_settings(settings),
        len(checkpoint["class_names"]),
        settings["roi_op"],
        settings["roi_size"],
        weights="none",
    )
    network.load_state_dict(checkpoint["model"])
    return network.to(context.device).eval(), settings


def run(config: DumpConfig, context: StageContext) -> dict[str, Any]:
    """Per-proposal softmax probabilities and features of the MIL network, for every image."""
    index = load_index(context.index_path)
    classes = index.classes
    images_by_id = {int(image["id"]): image for image in index.images}
    network, settings = load_network(context)
    with open_proposals(context.run_dir, context.index_path) as store:
        everything: list[ImageProposals] = list(store)
    items = [
        ProposalImage(
            p.image_id,
            index.image_path(images_by_id[p.image_id]),
            classes.label_vector(images_by_id[p.image_id]["labels"]),
            p.boxes,
            np.zeros((len(p), 0), dtype=np.float32),
        )
        for p in everything
        if len(p)
    ]
    loader = torch.utils.data.DataLoader(
        ProposalDataset(items, settings["input_size"], flip=False,
                        keep_aspect=settings.get("keep_aspect", False)),
        batch_size=config.batch_size,
        collate_fn=stack_items,
        num_workers=context.workers - 1,
    )
    probs: dict[int, np.ndarray] = {}
    features: dict[int, np.ndarray] = {}
    amp = config.amp and context.device.startswith("cuda")
    started = time.perf_counter()
    with torch.no_grad():
        for batch in track(loader, "dump (images)", total=len(loader)):
            for members in _same_size_groups(batch["image"]):
                boxes = [batch["boxes"][i] for i in members]
                with torch.autocast(device_type="cuda", enabled=amp):
                    logits, feats = network(
                        torch.stack([batch["image"][i] for i in members]).to(context.device),
                        [b.to(context.device) for b in boxes],
                    )
                sizes = [len(b) for b in boxes]
                for i, p, f in zip(
                    members, logits.float().softmax(dim=1).split(sizes), feats.split(sizes)
                ):
                    probs[batch["image_id"][i]] = p.cpu().numpy()
                    features[batch["image_id"][i]] = f.cpu().to(torch.float16).numpy()
    seconds = time.perf_counter() - started
    dim = network.feature_dim
    extra = {}
    if config.crop_features:
        extra[artifacts.H5_CROP_FEATURES] = crop_features(
            everything, index, images_by_id, config.crops, context.device
        )
    write_csr(
        context.out_dir / artifacts.DUMP_H5,
        schema=artifacts.SCHEMA_DUMP,
        fingerprint=file_sha256(context.index_path),
        image_ids=np.array([p.image_id for p in everything]),
        counts=np.array([len(p) for p in everything]),
        rows={
            artifacts.H5_PROBS: _rows(
                [probs.get(p.image_id) for p in everything], classes.num_classes + 1, np.float32
            ),
            artifacts.H5_FEATURES: _rows(
                [features.get(p.image_id) for p in everything], dim, np.float16
            ),
            artifacts.H5_PROPOSAL_INDEX: np.concatenate(
                [np.arange(len(p), dtype=np.int32) for p in everything] or [np.zeros(0, np.int32)]
            ),
            artifacts.H5_BOXES: _rows([p.boxes for p in everything], 4, np.float32),
            **extra,
        },
        per_image={
            artifacts.H5_LABELS: np.array(
                [classes.label_vector(images_by_id[p.image_id]["labels"]) for p in everything],
                dtype=np.float32,
            ).reshape(-1, classes.num_classes + 1)
        },
        attrs={artifacts.H5_PROPOSALS_SHA_ATTR: file_sha256(proposals_path(context.run_dir))},
    )
    rate = len(items) / seconds if seconds > 0 else 0.0
    log.info(
        f"dump: {len(items)} images in {seconds:.1f} s ({rate:.1f} images/s on {context.device})"
    )
    return {
        "images": len(everything),
        "images_with_proposals": len(items),
        "proposals": int(sum(len(p) for p in everything)),
        "feature_dim": dim,
        "images_per_second": rate,
    }


def crop_features(
    everything: list[ImageProposals],
    index: DatasetIndex,
    images_by_id: dict[int, dict[str, Any]],
    config: CropFeaturesConfig,
    device: str,
) -> np.ndarray:
    """float16 (M, D) ImageNet embeddings of every proposal box, in dump row order."""
    embedder = build_embedder(config.backbone, config.weights).to(device)
    blocks = [
        embed_boxes(embedder, read_rgb(index.image_path(images_by_id[p.image_id])), p.boxes,
                    config.side, device)
        for p in track([p for p in everything if len(p)], "dump (crop embeddings)")
    ]
    return _rows(blocks, blocks[0].shape[1] if blocks else 0, np.float16)


def _rows(blocks: list[np.ndarray | None], width: int, dtype: type) -> np.ndarray:
    present = [b.reshape(-1, width) for b in blocks if b is not None and len(b)]
    return np.concatenate(present).astype(dtype) if present else np.zeros((0, width), dtype=dtype)


def _same_size_groups(images: list[torch.Tensor]) -> list[list[int]]:
    """Positions of the batch's images grouped by size (with `keep_aspect` photos differ in
    size, and a batch stacks only images of one size)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(position)
    return list(groups.values())


SPEC = StageSpec(name="dump", config_model=DumpConfig, run=run)
