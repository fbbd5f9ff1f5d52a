"""`--resume`, one meaning for every trainer (pretrain, train-cam, train-mil, train, train-semantic,
train-box2mask and the rounds of box2mask).

A trainer saves a resume point in its stage's cache folder after every epoch (or every
`checkpoint_every` iterations): its own state (weights, optimiser, schedule, progress), the global
random states, and a key: the stage's fingerprint (config, seed, inputs, code) plus the part of the
stage it belongs to. With `--resume` the trainer continues from its point and ends exactly where an
uninterrupted run ends (a test per trainer compares the weights); a point made by another config,
input or code is refused. Without `--resume` it starts afresh and says what it passes over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liid_cli import artifacts
from liid_cli.checkpoints import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from liid_cli.errors import LiidError
from liid_cli.fileio import text_sha256
from liid_cli.log import log
from liid_cli.runner import StageContext


@dataclass(frozen=True)
class ResumePoint:
    context: StageContext
    label: str  # how messages name the trainer, e.g. "train-mil" or "box2mask round 2 FCN"
    part: str = ""  # a stage with several trainers gives each its own point
    # The trainer's objects (network, optimiser, schedule, ...): their state dicts are saved with
    # every point and loaded back on resume, under these names.
    objects: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        name = artifacts.RESUME_CHECKPOINT.format(part=f"{self.part}_" if self.part else "")
        return self.context.cache_dir / name

    @property
    def key(self) -> str:
        return text_sha256(f"{self.context.fingerprint}/{self.part}")

    def load(self) -> dict[str, Any] | None:
        """The state to continue from (the objects and the random states already restored), or
        None: start afresh."""
        path = self.path
        if not self.context.resume:
            if path.is_file():
                log.info(f"{self.label}: starting afresh; {path} holds an unfinished run that "
                         "--resume would continue")
            return None
        if not path.is_file():
            log.info(f"{self.label}: --resume given but there is no checkpoint at {path}; "
                     "starting afresh")
            return None
        saved = load_checkpoint(path)
        if saved.get("key") != self.key:
            raise LiidError(f"{path}: made by a run with other settings, inputs or code; rerun "
                            "without --resume to start afresh")
        state = saved["state"]
        for name, part in self.objects.items():
            part.load_state_dict(state[name])
        restore_rng_states(saved["rng"])
        log.info(f"{self.label}: resuming after {saved['progress']} from {path}")
        return state

    def save(self, state: dict[str, Any], progress: str) -> None:
        """Save `state` (the trainer's progress) and its objects' state dicts with the random
        states as they are now; `progress` says how far, e.g. "epoch 3/8"."""
        state = {**{name: part.state_dict() for name, part in self.objects.items()}, **state}
        save_checkpoint(
            self.path, {"key": self.key, "rng": rng_states(), "progress": progress, "state": state}
        )
