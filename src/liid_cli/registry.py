"""Every stage in one table: its name (the `liid` command, `stages/<name>.yaml` with `_` for `-`,
the module `liid_cli.stages.<name>`), its run sub-folder, the stages it reads and what it does.
Two stages share a command with another (`liid train --task semantic` runs train-semantic).

The runner takes a stage's upstream from here, `liid stages` and `liid --help` print it, `liid
ablation` takes the LIID chain from it, and a test checks the Makefile's order against it. The
table imports nothing heavy: a stage's code is imported only when it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str  # the run's sub-folder; short names where the paper's step has one (cam, mil, export)
    upstream: tuple[str, ...]  # stages whose finished folders this stage reads
    summary: str
    command: str = ""  # the `liid` command that runs it, when not `liid <name>`

    @property
    def cli(self) -> str:
        return f"liid {self.command or self.name}"

    @property
    def module(self) -> str:
        return f"liid_cli.stages.{file_stem(self.name)}"

    @property
    def yaml_name(self) -> str:
        return f"{file_stem(self.name)}.yaml"

    def spec(self) -> Any:
        """The stage's runner.StageSpec (imports the stage's code)."""
        return importlib.import_module(self.module).SPEC


def file_stem(name: str) -> str:
    """The stem of a stage's module and YAML file (`train-cam` -> `train_cam`)."""
    return name.replace("-", "_")


# In pipeline order: a stage comes after every stage it reads.
STAGES: tuple[Stage, ...] = (
    Stage("pretrain", "pretrain", (), "supervised classification pretraining of a backbone"),
    Stage("proposals", "proposals", (), "segment proposals: masks, boxes, scores"),
    Stage("train-cam", "cam", ("proposals",), "CAM classifier, CAM scores of every proposal"),
    Stage("train-mil", "mil", ("proposals", "train-cam"), "MIL network (L_Att + L_MIL + L_Cent)"),
    Stage("dump", "dump", ("proposals", "train-mil"), "per-proposal probabilities and features"),
    Stage("cut", "cut", ("dump",), "knowledge graph and its multiway cut"),
    Stage("export-coco", "export", ("proposals", "cut"), "COCO pseudo instances, palette PNGs"),
    Stage("baselines", "baselines", ("proposals", "train-cam", "dump", "cut", "export-coco"),
          "CAM threshold, best proposal, no graph"),
    Stage("train", "train", (), "Mask R-CNN on COCO instances"),
    Stage("predict", "predict", (), "a trained Mask R-CNN over an index"),
    Stage("train-semantic", "train_semantic", (), "DeepLabV3 on label maps",
          "train --task semantic"),
    Stage("predict-semantic", "predict_semantic", (), "a trained DeepLabV3 over an index",
          "predict --task semantic"),
    Stage("train-box2mask", "box2mask_model", (), "class-agnostic box-to-mask segmenter"),
    Stage("box2mask", "box2mask", (), "pseudo masks from the boxes of a data set"),
)
_BY_NAME = {stage.name: stage for stage in STAGES}


def stage(name: str) -> Stage:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(_BY_NAME)}") from None


def chain(last: str) -> tuple[str, ...]:
    """`last` and every stage it reads, directly or not, in pipeline order."""
    needed = {last}
    for entry in reversed(STAGES):
        if entry.name in needed:
            needed.update(entry.upstream)
    return tuple(entry.name for entry in STAGES if entry.name in needed)


def chain_from(first: str, last: str) -> tuple[str, ...]:
    """The stages of `chain(last)` from `first` on (what reruns when `first` changes)."""
    names = chain(last)
    return names[names.index(first):]


def names() -> tuple[str, ...]:
    return tuple(entry.name for entry in STAGES)
