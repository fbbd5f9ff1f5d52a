"""Acceptance check of the CAM and MIL stages: how often each labels a proposal correctly.

Each proposal of the training split gets the class of its best-overlapping ground-truth instance
(mask IoU >= 0.5, else background 0). Reported accuracies, over all proposals:
  (a) CAM pseudo labels y~ (eta and pooling of the train-mil config),
  (b) MIL argmax p, (c) label-masked MIL argmax (p * image label vector),
plus the all-background baseline and the accuracy on foreground / background proposals apart,
which says where one beats the other. `--oracle-epochs N` also trains the MIL network of the run's
train-mil settings on these ground-truth proposal labels (full supervision, cross-entropy) and
prints its training accuracy per epoch: how learnable the proposals are for that backbone at all.

    python benchmarks/mil_accuracy.py --run runs/demo [--oracle-epochs 15]
(needs finished proposals, train-cam, train-mil and dump stages, and the index's ground truth)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liid_cli import artifacts
from liid_cli.data.index import DatasetIndex, load_index
from liid_cli.evaluation.labels import KINDS, annotations_by_image, available_steps, region_kinds
from liid_cli.fileio import file_sha256, read_json
from liid_cli.h5store import open_csr
from liid_cli.models.mil import ProposalDataset, ProposalImage
from liid_cli.proposals.store import open_proposals
from liid_cli.runner import read_manifest
from liid_cli.stages.train_mil import TrainMilConfig, build_network


def ground_truth_labels(
    rles: list[dict[str, Any]], instances: list[dict[str, Any]], internal: dict[int, int]
) -> np.ndarray:
    """Class of each proposal's best-overlapping instance (mask IoU >= 0.5), else 0."""
    truth_classes = np.array([internal[inst["category_id"]] for inst in instances], dtype=np.int64)
    kinds, classes = region_kinds(rles, instances, truth_classes)
    return np.where(kinds == KINDS.index("object"), classes, 0)


def _mil_settings(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    manifest = read_manifest(artifacts.stage_dir(run_dir, "train-mil"))
    if manifest is None:
        raise SystemExit(f"{run_dir}: run train-mil and dump first")
    return Path(manifest["inputs"]["index"]["path"]), manifest["config"]


def _instances(index: DatasetIndex) -> dict[int, list[dict[str, Any]]]:
    return annotations_by_image(read_json(index.ground_truth_path))


def proposal_label_accuracy(run_dir: Path) -> dict[str, Any]:
    """Accuracies (a), (b), (c) and their foreground/background split for the run's training split."""
    index_path, _ = _mil_settings(run_dir)
    index = load_index(index_path)
    steps = available_steps(run_dir)
    if not {"cam", "mil"} <= set(steps):
        raise SystemExit(f"{run_dir}: run train-cam, train-mil and dump first")
    internal = {cid: index.classes.to_internal(cid) for cid in index.classes.category_ids}
    instances = _instances(index)
    fingerprint = file_sha256(index_path)
    truth, cam, mil, masked = [], [], [], []
    with (
        open_proposals(run_dir, index_path) as store,
        open_csr(steps["cam"].path, steps["cam"].schema, fingerprint, "train-cam") as cams,
        open_csr(steps["mil"].path, steps["mil"].schema, fingerprint, "dump") as dump,
    ):
        image_labels = dump.column(artifacts.H5_LABELS)
        for position, proposals in enumerate(store):
            if not len(proposals):
                continue
            image_id, label_vector = proposals.image_id, image_labels[position]
            truth.append(ground_truth_labels(proposals.rles(), instances[image_id], internal))
            cam.append(steps["cam"].labels(cams, image_id, label_vector))
            mil.append(dump.read(artifacts.H5_PROBS, image_id).argmax(axis=1))
            masked.append(steps["mil"].labels(dump, image_id, label_vector))
    y = np.concatenate(truth)
    foreground = y > 0
    result: dict[str, Any] = {
        "proposals": len(y),
        "foreground_fraction": float(foreground.mean()),
        "all_background_accuracy": float((y == 0).mean()),
    }
    for name, predicted in (
        ("a_cam_pseudo", cam),
        ("b_mil_argmax", mil),
        ("c_mil_label_masked", masked),
    ):
        guess = np.concatenate(predicted)
        result[name] = {
            "accuracy": float((guess == y).mean()),
            "foreground_accuracy": float((guess == y)[foreground].mean())
            if foreground.any()
            else None,
            "background_accuracy": float((guess == y)[~foreground].mean())
            if (~foreground).any()
            else None,
            "predicted_foreground_fraction": float((guess > 0).mean()),
        }
    return result


def supervised_oracle(run_dir: Path, epochs: int) -> None:
    """Train the run's MIL network architecture on ground-truth proposal labels; print accuracy per epoch."""
    index_path, settings = _mil_settings(run_dir)
    index = load_index(index_path)
    internal = {cid: index.classes.to_internal(cid) for cid in index.classes.category_ids}
    instances = _instances(index)
    images = {int(image["id"]): image for image in index.images}
    items, targets = [], []
    with open_proposals(run_dir, index_path) as store:
        for proposals in store:
            if len(proposals):
                image = images[proposals.image_id]
                targets.append(
                    torch.from_numpy(
                        ground_truth_labels(proposals.rles(), instances[image["id"]], internal)
                    )
                )
                items.append(
                    ProposalImage(
                        image["id"],
                        index.image_path(image),
                        index.classes.label_vector(image["labels"]),
                        proposals.boxes,
                        np.zeros((len(proposals), 0), dtype=np.float32),
                    )
                )
    torch.manual_seed(0)
    config = TrainMilConfig.model_validate(settings)
    network = build_network(config, index.classes.num_classes, run_dir)  # train-mil's start
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    dataset = ProposalDataset(items, config.input_size, flip=True, keep_aspect=config.keep_aspect)
    for epoch in range(epochs):
        network.train()
        hits = torch.zeros(2)
        totals = torch.zeros(2)
        for position in torch.randperm(len(items)).tolist():
            item, target = dataset[position], targets[position]
            logits, _ = network(item["image"][None], [item["boxes"]])
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct = logits.argmax(dim=1) == target
            for group, rows in enumerate((target == 0, target > 0)):
                hits[group] += correct[rows].sum()
                totals[group] += rows.sum()
        print(
            f"oracle epoch {epoch + 1}/{epochs}: background accuracy {hits[0] / totals[0]:.3f}, "
            f"foreground accuracy {hits[1] / totals[1].clamp_min(1):.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="run folder with proposals..dump finished"
    )
    parser.add_argument(
        "--oracle-epochs", type=int, default=0, help="also train on ground-truth labels"
    )
    args = parser.parse_args()
    result = proposal_label_accuracy(args.run)
    print(json.dumps(result, indent=1))
    a = result["a_cam_pseudo"]["accuracy"]
    best = max(result["b_mil_argmax"]["accuracy"], result["c_mil_label_masked"]["accuracy"])
    print(
        f"(a) CAM {a:.3f}  (b) MIL {result['b_mil_argmax']['accuracy']:.3f}  "
        f"(c) MIL label-masked {result['c_mil_label_masked']['accuracy']:.3f}  "
        f"-> MIL {'beats' if best > a else 'does NOT beat'} CAM"
    )
    if args.oracle_epochs:
        supervised_oracle(args.run, args.oracle_epochs)


if __name__ == "__main__":
    main()
