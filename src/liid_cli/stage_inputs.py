"""Inputs several stages declare (StageSpec.inputs): the same name, meaning and error for each."""

from __future__ import annotations

from liid_cli.runner import StageInput

WEIGHTS = StageInput("weights", "a weights file: pass --weights PATH")
LABELS = StageInput(
    "labels", "training labels: pass --labels (a COCO instances json or a folder of PNGs)",
    required=True,
)
VAL = StageInput("val", "a held-out split of the same data set: pass --val INDEX.json")
TRAINED_MODEL = StageInput(
    "model", "a trained model: pass --model model_best.pt (from `liid train`)", required=True
)
