"""`liid pretrain`: supervised classification pretraining of a backbone, where no ImageNet weights fit.

The LIID networks start from an ImageNet backbone. A backbone without published weights (the demo's
tinynet) or a domain far from ImageNet can be pretrained here on any fully labelled image set: the
train-cam classifier (backbone -> 1x1 conv -> GAP, BCE) is trained on its image labels, and the
trunk is saved as `<run>/pretrain/backbone.pt`, a state dict that `--weights PATH` of train-cam and
train-mil loads (and `weights:` of train-box2mask, for ResNet trunks). With `--val INDEX` the
held-out accuracy is measured.
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
from liid_cli.stage_inputs import VAL, WEIGHTS
from liid_cli.stages.train_cam import ClassifierConfig, LabelledImages, train_classifier


@torch.no_grad()
def label_accuracy(
    model: CamClassifier, images: LabelledImages, batch_size: int, device: str
) -> dict[str, float]:
    """top1: the highest-scoring class is one of the image's labels (images with labels only);
    label: per-class agreement of (logit > 0) with the labels."""
    model.eval()
    all_logits, all_labels = [], []
    for batch, labels in track(
        torch.utils.data.DataLoader(images, batch_size=batch_size), "held-out accuracy"
    ):
        all_logits.append(model(batch.to(device)).cpu())
        all_labels.append(labels)
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    labelled = labels.any(dim=1)
    top1 = labels.gather(1, logits.argmax(dim=1, keepdim=True))[:, 0][labelled]
    return {
        "top1": float(top1.mean()) if labelled.any() else 0.0,
        "label": float(((logits > 0).float() == labels).float().mean()),
    }


def run(config: ClassifierConfig, context: StageContext) -> dict[str, Any]:
    seed_everything(context.seed)
    index = load_index(context.index_path)
    if not index.images:
        raise LiidError(f"{context.index_path}: no images to train on")
    val_path = context.input(VAL)
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
            model,
            LabelledImages(val_index, config.input_size, flip=False),
            config.batch_size,
            context.device,
        )
        log.info(f"pretrain: held-out top-1 accuracy {accuracy['top1']:.3f} on {val_path}")
        metrics["val_accuracy"] = accuracy
    return metrics


SPEC = StageSpec(
    name="pretrain", config_model=ClassifierConfig, run=run, inputs=(WEIGHTS, VAL)
)
