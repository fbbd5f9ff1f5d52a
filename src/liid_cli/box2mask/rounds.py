"""The alternating scheme's glue: what the semantic FCN learns from, and the score maps it gives.

The FCN learns from the target images' pseudo masks (target classes) and the source objects'
masks as the current box-to-mask model draws them (source classes), so it has a score map for
every object box-to-mask sees, of the same quality: source objects while it is retrained (against
their ground truth), target objects when it labels them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from liid_cli import artifacts, masks
from liid_cli.box2mask.data import SourceInstance, TargetBox, load_source_instances
from liid_cli.box2mask.inference import (
    Box2MaskModel,
    checkpoint_payload,
    foreground_probabilities,
    masks_from_probabilities,
)
from liid_cli.box2mask.network import IMAGE_AND_BOX, SegmentationNet
from liid_cli.box2mask.semantic import LabelledImage, score_maps, train_semantic
from liid_cli.box2mask.training import ScoreMaps, cached_rgb, image_key, train_box2mask
from liid_cli.checkpoints import save_checkpoint
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256, read_json
from liid_cli.log import track
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext


def semantic_training_images(
    target_index: DatasetIndex,
    pseudo: list[dict[str, Any]],
    all_boxes: dict[int, list[TargetBox]],
    source_index: DatasetIndex,
    source_instances: list[SourceInstance],
    class_ids: dict[str, int],
) -> list[LabelledImage]:
    """One LabelledImage per distinct image file of the target and source sets.

    Boxes of classes an image is not taught (neither a labelled target nor a source class there)
    are ignored rather than called background.
    """
    target_names = {int(c["id"]): str(c["name"]) for c in target_index.categories}
    source_names = {int(c["id"]): str(c["name"]) for c in source_index.categories}
    source_classes = {instance.class_name for instance in source_instances}
    labelled_targets = {target_names[a["category_id"]] for a in pseudo}
    entries: dict[str, dict[str, Any]] = {}

    def entry(path: Path, image: dict[str, Any]) -> dict[str, Any]:
        return entries.setdefault(
            image_key(path),
            {
                "path": path,
                "height": image["height"],
                "width": image["width"],
                "instances": [],
                "taught": set(),
                "boxes": [],
            },
        )

    pseudo_by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in pseudo:
        pseudo_by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in target_index.images:
        item = entry(target_index.image_path(image), image)
        item["taught"] |= labelled_targets
        for annotation in pseudo_by_image.get(int(image["id"]), []):
            item["instances"].append(
                (annotation["segmentation"], class_ids[target_names[annotation["category_id"]]])
            )
        item["boxes"] += [
            (target_names[b.category_id], b.box) for b in all_boxes.get(int(image["id"]), [])
        ]

    source_images = {int(image["id"]): image for image in source_index.images}
    for instance in source_instances:
        item = entry(instance.image_path, source_images[instance.image_id])
        item["taught"] |= source_classes
        item["instances"].append((instance.rle, class_ids[instance.class_name]))
    gt_path = source_index.ground_truth_path
    used_source_images = {instance.image_id for instance in source_instances}
    for annotation in read_json(gt_path)["annotations"] if gt_path else []:
        image = source_images.get(int(annotation["image_id"]))
        if image is None or int(image["id"]) not in used_source_images:
            continue
        x0, y0, w, h = (float(v) for v in annotation["bbox"])
        entry(source_index.image_path(image), image)["boxes"].append(
            (source_names[int(annotation["category_id"])], (x0, y0, x0 + w, y0 + h))
        )
    return [
        LabelledImage(
            item["path"],
            item["height"],
            item["width"],
            tuple(item["instances"]),
            tuple(box for name, box in item["boxes"] if name not in item["taught"]),
        )
        for item in entries.values()
    ]


def needed_score_maps(
    net: SegmentationNet,
    images: list[LabelledImage],
    wanted: dict[str, set[str]],
    class_ids: dict[str, int],
    input_size: int,
) -> ScoreMaps:
    """{(image path, class name): float16 (H, W)} for the classes wanted in each image."""
    maps: ScoreMaps = {}
    for image in track(images, "score maps"):
        names = wanted.get(image_key(image.path))
        if not names:
            continue
        scores = score_maps(net, image, input_size)
        for name in names:
            maps[(image_key(image.path), name)] = scores[class_ids[name]].astype(np.float16)
    return maps


def _source_set(model: Box2MaskModel) -> tuple[DatasetIndex, list[SourceInstance]]:
    """The source data set the model was trained on, checked unchanged since."""
    path = model.source_index
    if not path.is_file():
        raise LiidError(
            f"{path}: the source data set index of {model.path} is gone; --rounds retrains "
            "box-to-mask on it, so restore it (or retrain with `liid train-box2mask`)"
        )
    if file_sha256(path) != model.source_index_fingerprint:
        raise LiidError(
            f"{path} changed since {model.path} was trained on it; retrain with "
            "`liid train-box2mask --force` before --rounds"
        )
    index = load_index(path)
    return index, load_source_instances(
        index, list(model.source_classes), model.config["min_instance_area"]
    )


def model_masks_of_sources(
    model: Box2MaskModel, instances: list[SourceInstance], threshold: float, clip_to_box: bool
) -> list[SourceInstance]:
    """The source instances with the model's own masks of their boxes in place of the truth.

    The FCN learns source objects from these, so its score maps are as good on source objects
    (where box-to-mask is retrained with them) as on target objects (where it is applied); trained
    on the truth they are near perfect on source objects only, and box-to-mask learns to trust
    them more than they deserve on the targets (measured on coco-dev: docs/results.md).
    """
    by_image: dict[Path, list[int]] = {}
    for position, instance in enumerate(instances):
        by_image.setdefault(instance.image_path, []).append(position)
    replaced = list(instances)
    for path, positions in track(list(by_image.items()), "source masks by the model"):
        boxes = np.array([instances[p].box for p in positions], dtype=np.float32)
        probabilities = foreground_probabilities(
            model, cached_rgb(path).permute(1, 2, 0).numpy(), boxes
        )
        predicted, _, _ = masks_from_probabilities(
            probabilities, boxes, threshold=threshold, clip_to_box=clip_to_box
        )
        for position, mask in zip(positions, masks.encode_many(predicted)):
            replaced[position] = dataclasses.replace(instances[position], rle=mask)
    return replaced


def run_round(
    number: int,
    model: Box2MaskModel,
    index: DatasetIndex,
    annotations: list[dict[str, Any]],
    all_boxes: dict[int, list[TargetBox]],
    boxes: dict[int, list[TargetBox]],
    settings: dict[str, Any],
    *,
    context: StageContext,
    folder: Path,
) -> tuple[Box2MaskModel, ScoreMaps, dict[str, float]]:
    """One later round: train the semantic FCN on the current pseudo masks (+ source masks), then
    retrain box-to-mask with its score maps as the fifth channel; return the new model, the score
    maps of every object, and both final losses. Saves both networks into `folder`."""
    source_index, source_instances = _source_set(model)
    names = {int(c["id"]): str(c["name"]) for c in index.categories}
    class_names = sorted({names[a["category_id"]] for a in annotations} | set(model.source_classes))
    class_ids = {name: position + 1 for position, name in enumerate(class_names)}
    taught_sources = model_masks_of_sources(
        model, source_instances, settings["threshold"], settings["clip_to_box"]
    )
    images = semantic_training_images(
        index, annotations, all_boxes, source_index, taught_sources, class_ids
    )
    semantic_net, semantic_loss = train_semantic(
        images,
        len(class_ids),
        settings["semantic"],
        context=context,
        resume_point=ResumePoint(context, f"semantic FCN round {number}", f"semantic_round_{number}"),
    )
    wanted: dict[str, set[str]] = {}
    for image in index.images:
        for box in boxes[int(image["id"])]:
            wanted.setdefault(image_key(index.image_path(image)), set()).add(names[box.category_id])
    for instance in source_instances:
        wanted.setdefault(image_key(instance.image_path), set()).add(instance.class_name)
    scores = needed_score_maps(
        semantic_net, images, wanted, class_ids, settings["semantic"]["input_size"]
    )
    net, box2mask_loss = train_box2mask(
        {**model.config, "lr": settings["retrain_lr"]},
        source_instances,
        in_channels=IMAGE_AND_BOX + 1,
        init_state={k: v.cpu() for k, v in model.net.state_dict().items()},
        score_maps=scores,
        score_dropout=settings["score_dropout"],
        iterations=settings["retrain_iterations"],
        context=context,
        resume_point=ResumePoint(context, f"box2mask round {number}", f"box2mask_round_{number}"),
    )
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / artifacts.BOX2MASK_CHECKPOINT
    save_checkpoint(
        checkpoint,
        checkpoint_payload(
            net,
            model.config,
            list(model.source_classes),
            model.source_index,
            model.source_index_fingerprint,
            settings["retrain_iterations"],
        ),
    )
    save_checkpoint(
        folder / artifacts.BOX2MASK_SEMANTIC_CHECKPOINT,
        {
            "model": {k: v.cpu() for k, v in semantic_net.state_dict().items()},
            "class_names": class_names,
            "settings": settings["semantic"],
        },
    )
    net.eval()
    new_model = Box2MaskModel(
        net,
        model.config,
        model.source_classes,
        model.source_index,
        model.source_index_fingerprint,
        checkpoint,
    )
    return new_model, scores, {"semantic_loss": semantic_loss, "box2mask_loss": box2mask_loss}
