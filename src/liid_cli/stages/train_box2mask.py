"""Stage `train-box2mask`: the class-agnostic box-to-mask segmenter, trained on source-class masks."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from liid_cli import artifacts
from liid_cli.box2mask.data import load_source_instances
from liid_cli.box2mask.inference import checkpoint_payload
from liid_cli.box2mask.network import IMAGE_AND_BOX
from liid_cli.box2mask.training import train_box2mask
from liid_cli.checkpoints import save_checkpoint, seed_everything
from liid_cli.config import StageConfig
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext, StageSpec


class TrainBox2MaskConfig(StageConfig):
    # class names whose masks are used; `all`: every class of the index (a fully supervised reference)
    source_classes: Annotated[list[str], Field(min_length=1)] | Literal["all"]
    encoder: str  # a timm model name, or resnet18/34/50/101 (torchvision)
    weights: str  # imagenet | none | PATH
    decoder_channels: PositiveInt
    crop_size: Annotated[int, Field(ge=32, multiple_of=32)]
    context: NonNegativeFloat  # window margin on each side, as a fraction of the box size
    jitter: Annotated[float, Field(ge=0, lt=1)]  # random relative change of each margin in training
    min_instance_area: NonNegativeInt  # pixels; smaller source instances are not trained on
    iterations: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    weight_decay: NonNegativeFloat
    checkpoint_every: PositiveInt  # iterations between resumable states in <run>/.cache


def run(config: TrainBox2MaskConfig, context: StageContext) -> dict[str, Any]:
    """Read the index (`--data`, the source set) and its ground-truth masks of `source_classes`;
    write `box2mask.pt` (weights, config, source classes and the source index) into the stage folder.
    """
    index = load_index(context.index_path)
    source_classes = (
        [str(c["name"]) for c in index.categories]
        if config.source_classes == "all"
        else config.source_classes
    )
    instances = load_source_instances(index, source_classes, config.min_instance_area)
    seed_everything(context.seed)
    settings = {**config.model_dump(mode="json"), "source_classes": source_classes}
    net, final_loss = train_box2mask(
        settings,
        instances,
        in_channels=IMAGE_AND_BOX,
        init_state=None,
        score_maps=None,
        score_dropout=0.0,
        iterations=config.iterations,
        context=context,
        resume_point=ResumePoint(context, "train-box2mask"),
    )
    save_checkpoint(
        context.out_dir / artifacts.BOX2MASK_CHECKPOINT,
        checkpoint_payload(
            net.cpu(),
            settings,
            source_classes,
            context.index_path.resolve(),
            file_sha256(context.index_path),
            config.iterations,
        ),
    )
    per_class = Counter(instance.class_name for instance in instances)
    return {
        "source_classes": source_classes,
        "source_instances": len(instances),
        "source_instances_per_class": dict(sorted(per_class.items())),
        "final_loss": final_loss,
        "iterations": config.iterations,
    }


SPEC = StageSpec(name="train-box2mask", config_model=TrainBox2MaskConfig, run=run)
