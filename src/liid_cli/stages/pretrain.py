"""`liid pretrain`: supervised classification pretraining of a backbone, where no ImageNet weights fit.

The LIID networks start from an ImageNet backbone. A backbone without published weights (the demo's
tinynet) or a domain far from ImageNet can be pretrained here on any fully labelled image set: the
train-cam classifier (backbone -> 1x1 conv -> GAP, BCE) is trained on its image labels, and the
trunk is saved as `<run>/pretrain/backbone.pt`, a state dict that `--weights PATH` of train-cam,
train-mil and train-box2mask loads. With `--val INDEX` the held-out accuracy is measured.
"""

from __future__ import annotations

from typing import Any

import torch

from liid_cli import artifacts
from liid_cli.checkpoints import save_checkpoint, seed_everything
from liid_cli.data.index import load_index
from liid_cli.errors import LiidError
from liid_cli.log import log, track
from liid_cli.models.cam import CamClassifier
from liid_cli.runner import StageContext, StageSpec
from liid_cli.stages.train_cam import ClassifierConfig, LabelledImages, train_classifier


class PretrainConfig(ClassifierConfig):
    pass


@torch.no_grad()
def label_accuracy(
    model: CamClassifier, images: LabelledImages, device: str
) -> dict[str, float]:
    """top1: the highest-scoring class is one of the image's labels (images with labels only);
    label: per-class agreement of (logit > 0) with the labels."""
    model.eval()
    top1_hits, top1_count, label_hits, label_count = 0, 0, 0, 0
    for position in track(range(len(images)), "held-out accuracy"):
        tensor, labels = images[position]
        logits = model(tensor[None].to(device))[0].cpu()
        label_hits += int(((logits > 0).float() == labels).sum())
        label_count += len(labels)
        if labels.any():
            top1_hits += int(labels[logits.argmax()] > 0)
            top1_count += 1
    return {"top1": top1_hits / max(top1_count, 1), "label": label_hits / max(label_count, 1)}


def run(config: PretrainConfig, context: StageContext) -> dict[str, Any]:
    seed_everything(context.seed)
    index = load_index(context.index_path)
    if not index.images:
        raise LiidError(f"{context.index_path}: no images to train on")
    val_path = context.extra_inputs.get("val")
    val_index = load_index(val_path) if val_path is not None else None
    if val_index is not None and val_index.classes != index.classes:
        raise LiidError(f"{val_path}: its classes differ from {context.index_path}'s; pass a --val "
                        "split of the same data set")
    model, final_loss = train_classifier(index, config, context, "pretrain")
    trunk = {name: value.cpu() for name, value in model.trunk.state_dict().items()}
    save_checkpoint(context.out_dir / artifacts.PRETRAINED_BACKBONE, {"model": trunk})
    metrics: dict[str, Any] = {"final_bce": final_loss}
    if val_index is not None:
        accuracy = label_accuracy(
            model, LabelledImages(val_index, config.input_size, flip=False), context.device
        )
        log.info(f"pretrain: held-out top-1 accuracy {accuracy['top1']:.3f} on {val_path}")
        metrics["val_accuracy"] = accuracy
    return metrics


SPEC = StageSpec(name="pretrain", config_model=PretrainConfig, upstream=(), run=run)
