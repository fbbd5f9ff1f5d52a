"""Every folder, file and HDF5 name of a run, and the schema strings; nothing else names them.

A run folder holds one sub-folder per stage; `manifest.json` inside a stage folder is written last,
so its presence means the stage completed.
"""

from __future__ import annotations

from pathlib import Path

from liid_cli import registry

DEFAULT_RUN = Path("runs/default")

MANIFEST = "manifest.json"
RESOLVED_CONFIG = "config.yaml"
CACHE_DIR = ".cache"  # per-stage resumable scratch (checkpoints, finished shards); not an output
RESUME_CHECKPOINT = "{part}resume.pt"  # a trainer's resume point in its stage's cache folder
BEST_SO_FAR = "best.pt"  # `liid train`: the best validated model so far, in the cache folder

# Dataset folder (written by `liid data ...`).
INDEX_FILE = "index_{split}.json"
GT_FILE = "gt_{split}.json"
IMAGES_DIR = "images"

# Stage folders (registry.STAGES names them) and their main outputs.
EVAL_DIR = "eval"  # `liid eval` writes <run>/eval/<name>/
PROPOSALS_H5 = "proposals.h5"
PROPOSAL_PARTS_DIR = "proposal_parts"  # `liid proposals --shard i/n` writes part-<i>-of-<n>.h5 here
PROPOSAL_PART_FILE = "part-{index:05d}-of-{count:05d}.h5"
PRETRAINED_BACKBONE = "backbone.pt"  # {"model": trunk state dict}, loadable by --weights PATH
CAM_CHECKPOINT = "cam.pt"
CAM_SCORES_H5 = "cam_scores.h5"
# Each image's CAMs of its tagged classes at the network's output resolution, before resizing:
# `liid baselines` resizes them instead of running the classifier again.
CAM_LOW_RES_H5 = "cam_maps.h5"
CAM_MAPS_DIR = "cams"
MIL_CHECKPOINT = "mil.pt"
DUMP_H5 = "dump.h5"
CUT_H5 = "cut.h5"
PSEUDO_INSTANCES_JSON = "pseudo_instances.json"
SEMANTIC_DIR = "semantic"
MODEL_BEST = "model_best.pt"
MODEL_LAST = "model_last.pt"
INPUTS_DIR = "inputs"  # <run>/inputs/: indexes that `liid predict --images DIR` makes of a folder
FOLDER_INDEX = "index_{name}.json"
PREDICTIONS_JSON = "predictions.json"
METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"
# `make real-train VAL_...`: <run>/val/<model>/ is a run folder per Mask R-CNN (trained on LIID's
# pseudo labels, on ground truth, on a baseline's labels) holding its predictions on the
# validation photos (predict/, predictions.json) and their evaluation.
VAL_DIR = "val"
# `liid eval` writes <run>/eval/<name>/metrics.json; the default names of what it evaluates:
EVAL_PSEUDO = "pseudo_labels"  # export-coco's pseudo instances vs the training split's ground truth
EVAL_PREDICTIONS = "predictions"  # predict's results vs the evaluated split's ground truth
EVAL_SEMANTIC = "semantic"  # export-coco's palette PNGs vs label maps painted from the ground truth
EVAL_SEMANTIC_PREDICTIONS = "semantic_predictions"  # predict-semantic's PNGs vs the ground truth
EVAL_PROPOSALS = "proposals"  # `liid eval proposals`: proposal recall and ABO vs the ground truth
EVAL_LABELS = "labels"  # `liid eval labels`: proposal kinds vs what each labelling step made of them
VIZ_DIR = "viz"  # `liid viz`: overlay grids and palette renderings (report.html sits in the run folder)
BOX2MASK_CHECKPOINT = "box2mask.pt"
BOX2MASK_ROUNDS_DIR = "rounds"  # box2mask --rounds R: rounds/round_<r>/ per round
BOX2MASK_ROUND_DIR = "round_{round}"
BOX2MASK_SEMANTIC_CHECKPOINT = "semantic.pt"  # the rounds' semantic FCN

# Schema strings carried by every HDF5 file as the `schema` attribute.
SCHEMA_INDEX = "liid.index/1"
SCHEMA_MANIFEST = "liid.manifest/1"
SCHEMA_PROPOSALS = "liid.proposals/1"
SCHEMA_CAM_SCORES = "liid.cam_scores/3"
SCHEMA_CAM_LOW_RES = "liid.cam_maps/1"
H5_CAM_MAPS = "maps"  # (R, L) float32: one row per image and tagged class, h*w values, zero-padded
H5_CAM_MAP_CLASSES = "map_classes"  # (R,) the 0-based class of each row
H5_CAM_MAP_SHAPES = "map_shapes"  # (N, 2) per image: (h, w) of its maps
SCHEMA_DUMP = "liid.dump/1"
SCHEMA_CUT = "liid.cut/1"
SCHEMA_BOX2MASK = "liid.box2mask/1"  # box-to-mask checkpoint (`schema` key)

# Common HDF5 names: ragged per-image rows in CSR layout (rows offsets[i]:offsets[i+1] = image i).
H5_SCHEMA_ATTR = "schema"
H5_FINGERPRINT_ATTR = "fingerprint"  # fingerprint of the index the file was made from
H5_IMAGE_IDS = "image_ids"
H5_OFFSETS = "offsets"
H5_BOXES = "boxes"  # float32 (M, 4) xyxy pixels
H5_MASKS_RLE = "masks_rle"  # variable-length bytes, COCO RLE `counts`
H5_SCORES = "scores"
H5_PROBS = "probs"  # float32 (M, K+1)
H5_FEATURES = "features"  # float16 (M, D)
H5_CROP_FEATURES = "crop_features"  # float16 (M, D'): ImageNet embeddings of the boxes' crops
H5_PROPOSAL_INDEX = "proposal_index"
H5_LABELS = "labels"
H5_IMAGE_SIZES = "image_sizes"  # int32 (N, 2) = (height, width), per image
H5_CAM_BOX_SCORES = "cam_box_scores"  # float32 (M, K), CAM mean + max inside the box
H5_CAM_MASK_SCORES = "cam_mask_scores"  # float32 (M, K), CAM mean + max inside the mask
# float32 (M, K): how well the mask matches the CAM, the F-measure of the CAM's mean inside the mask
# (precision) and the share of the image's CAM mass inside it (coverage).
H5_CAM_MASK_AGREEMENT = "cam_mask_agreement"
# float32 (M, K): the CAM classifier's sigmoid on the crop of each proposal's box: high where the
# box holds the class's object, lower for its parts and the background around it.
H5_CAM_CROP_SCORES = "cam_crop_scores"
H5_PROPOSALS_SHA_ATTR = "proposals_sha256"  # the proposals.h5 a row-aligned file was made from
# cut.h5: per-SOP connected component id, and per-component tables (indexed by component id).
H5_COMPONENT = "component"
H5_COMPONENT_SIZE = "component_size"
# int32 (M, k): each SOP's kNN neighbours (global rows; by the crop features when the dump has
# them) after the other-image and class-sharing filters, -1 where fewer
H5_NEIGHBOURS = "neighbours"
H5_COMPONENT_ENERGY = "component_energy"
H5_COMPONENT_LOWER_BOUND = "component_lower_bound"  # NaN where the LP was not solved
H5_COMPONENT_GAP = "component_gap"


def stage_dir(run_dir: Path, stage: str) -> Path:
    return run_dir / registry.stage(stage).folder


def cache_dir(run_dir: Path, stage: str) -> Path:
    return run_dir / CACHE_DIR / registry.stage(stage).folder


def index_path(data_dir: Path, split: str) -> Path:
    return data_dir / INDEX_FILE.format(split=split)


def eval_metrics_path(run_dir: Path, name: str) -> Path:
    return run_dir / EVAL_DIR / name / METRICS_JSON


def gt_path(data_dir: Path, split: str) -> Path:
    return data_dir / GT_FILE.format(split=split)


def val_runs(run_dir: Path) -> dict[str, Path]:
    """{model: run folder} of `<run>/val/<model>/` folders whose predict stage has finished."""
    predict = registry.stage("predict").folder
    return {
        path.parent.parent.name: path.parent.parent
        for path in sorted((run_dir / VAL_DIR).glob(f"*/{predict}/{MANIFEST}"))
    }
