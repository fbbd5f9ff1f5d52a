"""`--resume`, one meaning for every trainer: a run interrupted after a checkpoint and resumed ends
with the same weights, bit for bit, as an uninterrupted run (train-mil: tests/stages/test_mil.py; train
and train-semantic: tests/downstream/test_train.py; here the resume point itself, pretrain and train-cam, and
the iteration loop of train-box2mask and of box2mask's rounds)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.proposal_fixture import write_fake_proposals

from liid_cli import artifacts, registry
from liid_cli.box2mask.network import build_box2mask_net
from liid_cli.box2mask.training import DrawsWithReplacement, fit
from liid_cli.checkpoints import load_checkpoint, seed_everything
from liid_cli.config import load_stage_config
from liid_cli.errors import LiidError
from liid_cli.resume import ResumePoint
from liid_cli.runner import StageContext, run_stage
from liid_cli.stages import train_cam

TINY_NET = {"encoder": "tf_efficientnet_lite0", "decoder_channels": 8}


def _context(tmp_path: Path, *, fingerprint: str = "f", resume: bool = False) -> StageContext:
    return StageContext(
        run_dir=tmp_path, out_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
        index_path=tmp_path / "index.json", seed=0, device="cpu", workers=1,
        fingerprint=fingerprint, resume=resume,
    )


def test_a_resume_point_brings_back_the_state_and_the_random_draws(tmp_path: Path) -> None:
    point = ResumePoint(_context(tmp_path, resume=True), "trainer", "part")
    seed_everything(3)
    point.save({"epoch": 2}, "epoch 2/3")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    seed_everything(99)
    assert point.load() == {"epoch": 2}
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    assert point.path.name == "part_resume.pt"


def test_without_resume_a_trainer_starts_afresh(tmp_path: Path) -> None:
    ResumePoint(_context(tmp_path), "trainer").save({"epoch": 1}, "epoch 1/2")
    assert ResumePoint(_context(tmp_path), "trainer").load() is None
    assert ResumePoint(_context(tmp_path / "none", resume=True), "trainer").load() is None


def test_a_point_of_another_run_is_refused(tmp_path: Path) -> None:
    ResumePoint(_context(tmp_path, fingerprint="a"), "trainer").save({"epoch": 1}, "epoch 1/2")
    with pytest.raises(LiidError, match="other settings, inputs or code.*without --resume"):
        ResumePoint(_context(tmp_path, fingerprint="b", resume=True), "trainer").load()
    other_part = ResumePoint(_context(tmp_path, fingerprint="a", resume=True), "trainer", "x")
    (tmp_path / "cache" / "resume.pt").rename(other_part.path)
    with pytest.raises(LiidError, match="other settings"):  # another trainer of the same stage
        other_part.load()


def _interrupt_in_epoch(monkeypatch: pytest.MonkeyPatch, stopped_epoch: int) -> None:
    real = train_cam.train_one_epoch

    def stop(*args: Any) -> float:
        if args[7] == stopped_epoch:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_cam, "train_one_epoch", stop)


@pytest.mark.parametrize(("stage", "checkpoint"), [
    ("train-cam", artifacts.CAM_CHECKPOINT), ("pretrain", artifacts.PRETRAINED_BACKBONE),
])
def test_classifier_resumed_equals_uninterrupted(
    stage: str, checkpoint: str, tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tiny_demo / "index_train.json"
    spec = registry.stage(stage).spec()
    config = load_stage_config(stage, spec.config_model, profile="demo", overrides=[
        "input_size=48", "epochs=2", "batch_size=8", *(["save_cams=false"] if stage == "train-cam" else []),
    ])
    weights = []
    for run_dir, interrupted in ((tmp_path / "whole", False), (tmp_path / "resumed", True)):
        write_fake_proposals(run_dir, index, random_per_image=3)
        if interrupted:
            with monkeypatch.context() as patch:
                _interrupt_in_epoch(patch, 1)
                with pytest.raises(KeyboardInterrupt):
                    run_stage(spec, config, run_dir=run_dir, index_path=index)
        manifest = run_stage(spec, config, run_dir=run_dir, index_path=index, resume=interrupted)
        weights.append(load_checkpoint(artifacts.stage_dir(run_dir, stage) / checkpoint)["model"])
        assert manifest["metrics"]["final_bce"] > 0
    whole, resumed = weights
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)


class _Augmented(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Draws from the global torch generator per item, like the crop jitter and flips."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(5, 4, 32, 32, generator=generator)
        self.targets = (torch.rand(5, 32, 32, generator=generator) > 0.5).long()

    def __len__(self) -> int:
        return 5

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.images[item] + 0.1 * torch.rand(()), self.targets[item]
        return (image.flip(-1), target.flip(-1)) if torch.rand(()) < 0.5 else (image, target)


def _fit(context: StageContext, stop_at: int | None = None) -> dict[str, torch.Tensor]:
    seed_everything(0)
    net = build_box2mask_net(TINY_NET, 4)
    point = ResumePoint(context, "box2mask round 2", "box2mask_round_2")
    with pytest.MonkeyPatch.context() as patch:
        if stop_at is not None:
            real_save = ResumePoint.save

            def save_then_stop(self: ResumePoint, state: dict[str, Any], progress: str) -> None:
                real_save(self, state, progress)
                if state["iteration"] == stop_at:
                    raise KeyboardInterrupt

            patch.setattr(ResumePoint, "save", save_then_stop)
        fit(net, _Augmented(), make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
            iterations=5, batch_size=2, context=context, resume_point=point, checkpoint_every=2)
    return {key: value.clone() for key, value in net.state_dict().items()}


def test_iteration_loop_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    whole = _fit(_context(tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        _fit(_context(tmp_path / "resumed"), stop_at=2)
    saved = load_checkpoint(tmp_path / "resumed" / "cache" / "box2mask_round_2_resume.pt")
    assert saved["state"]["iteration"] == 2 and saved["progress"] == "iteration 2/5"
    resumed = _fit(_context(tmp_path / "resumed", resume=True))
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    afresh = _fit(_context(tmp_path / "afresh"))  # and a third, uninterrupted run agrees
    assert all(torch.equal(whole[key], afresh[key]) for key in whole)


def test_draws_are_random_samplers_and_skip_what_was_trained_on() -> None:
    torch.manual_seed(5)
    reference = list(torch.utils.data.RandomSampler(range(7), replacement=True, num_samples=70))
    torch.manual_seed(5)
    draws = DrawsWithReplacement(7, 70)
    assert list(draws) == reference
    assert list(DrawsWithReplacement(7, 70, draws.seed, skip=33)) == reference[33:]
    assert len(DrawsWithReplacement(7, 70, draws.seed, skip=33)) == 37
