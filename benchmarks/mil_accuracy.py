"""Acceptance check of the CAM and MIL stages: how often each labels a proposal correctly.

Each proposal of the training split gets the class of its best-overlapping ground-truth instance
(mask IoU >= 0.5, else background 0). Reported accuracies, over all proposals:
  (a) CAM pseudo labels y~ (eta and pooling of the train-mil config),
  (b) MIL argmax p, (c) label-masked MIL argmax (p * image label vector),
plus the all-background baseline and the accuracy on foreground / background proposals apart,
which says where one beats the other.

    python benchmarks/mil_accuracy.py --run runs/demo
(needs finished proposals, train-cam, train-mil and dump stages, and the index's ground truth)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liid_cli import artifacts, masks
from liid_cli.data.index import load_index
from liid_cli.fileio import file_sha256, read_json
from liid_cli.h5store import open_csr
from liid_cli.models.losses import pseudo_labels
from liid_cli.proposals.store import open_proposals
from liid_cli.runner import read_manifest


def ground_truth_labels(rles: list[dict[str, Any]], instances: list[dict[str, Any]],
                        internal: dict[int, int], threshold: float = 0.5) -> np.ndarray:
    """Class of each proposal's best-overlapping instance (IoU >= threshold), else 0."""
    labels = np.zeros(len(rles), dtype=np.int64)
    if not rles or not instances:
        return labels
    ious = masks.iou_matrix(rles, [inst["segmentation"] for inst in instances])
    best = ious.argmax(axis=1)
    hit = ious[np.arange(len(rles)), best] >= threshold
    classes = np.array([internal[inst["category_id"]] for inst in instances])
    labels[hit] = classes[best[hit]]
    return labels


def proposal_label_accuracy(run_dir: Path) -> dict[str, Any]:
    """Accuracies (a), (b), (c) and their foreground/background split for the run's training split."""
    mil_manifest = read_manifest(artifacts.stage_dir(run_dir, "train-mil"))
    if mil_manifest is None:
        raise SystemExit(f"{run_dir}: run train-mil and dump first")
    index_path = Path(mil_manifest["inputs"]["index"]["path"])
    index = load_index(index_path)
    loss = mil_manifest["config"]["loss"]
    column = artifacts.H5_CAM_BOX_SCORES if loss["pooling"] == "box" else artifacts.H5_CAM_MASK_SCORES
    internal = {cid: index.classes.to_internal(cid) for cid in index.classes.category_ids}
    instances = defaultdict(list)
    for annotation in read_json(index.ground_truth_path)["annotations"]:
        if not annotation.get("iscrowd", 0):
            instances[annotation["image_id"]].append(annotation)
    fingerprint = file_sha256(index_path)
    truth, cam, mil, masked = [], [], [], []
    with open_proposals(run_dir, index_path) as store, \
            open_csr(artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_SCORES_H5,
                     artifacts.SCHEMA_CAM_SCORES, fingerprint, "train-cam") as cams, \
            open_csr(artifacts.stage_dir(run_dir, "dump") / artifacts.DUMP_H5,
                     artifacts.SCHEMA_DUMP, fingerprint, "dump") as dump:
        image_labels = dump.column(artifacts.H5_LABELS)
        for position, proposals in enumerate(store):
            if not len(proposals):
                continue
            truth.append(ground_truth_labels(proposals.rles(), instances[proposals.image_id], internal))
            label_vector = torch.from_numpy(image_labels[position])
            scores = torch.from_numpy(cams.read(column, proposals.image_id))
            cam.append(pseudo_labels(scores, label_vector, loss["eta"]).numpy())
            probs = dump.read(artifacts.H5_PROBS, proposals.image_id)
            mil.append(probs.argmax(axis=1))
            masked.append((probs * image_labels[position]).argmax(axis=1))
    y = np.concatenate(truth)
    foreground = y > 0
    result: dict[str, Any] = {"proposals": int(len(y)), "foreground_fraction": float(foreground.mean()),
                              "all_background_accuracy": float((y == 0).mean())}
    for name, predicted in (("a_cam_pseudo", cam), ("b_mil_argmax", mil), ("c_mil_label_masked", masked)):
        guess = np.concatenate(predicted)
        result[name] = {
            "accuracy": float((guess == y).mean()),
            "foreground_accuracy": float((guess == y)[foreground].mean()) if foreground.any() else None,
            "background_accuracy": float((guess == y)[~foreground].mean()) if (~foreground).any() else None,
            "predicted_foreground_fraction": float((guess > 0).mean()),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder with proposals..dump finished")
    result = proposal_label_accuracy(parser.parse_args().run)
    print(json.dumps(result, indent=1))
    a = result["a_cam_pseudo"]["accuracy"]
    best = max(result["b_mil_argmax"]["accuracy"], result["c_mil_label_masked"]["accuracy"])
    print(f"(a) CAM {a:.3f}  (b) MIL {result['b_mil_argmax']['accuracy']:.3f}  "
          f"(c) MIL label-masked {result['c_mil_label_masked']['accuracy']:.3f}  "
          f"-> MIL {'beats' if best > a else 'does NOT beat'} CAM")


if __name__ == "__main__":
    main()
