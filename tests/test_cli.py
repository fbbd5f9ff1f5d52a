"""The command line: every stage is registered and documents itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers import liid

STAGES = ["pretrain", "proposals", "train-cam", "train-mil", "dump", "cut", "export-coco", "train", "predict",
          "viz", "train-box2mask", "box2mask"]


def test_top_level_help_lists_every_stage() -> None:
    result = liid("--help")
    assert result.exit_code == 0
    for stage in [*STAGES, "data", "eval"]:
        assert stage in result.output


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_shows_common_options(stage: str) -> None:
    result = liid(stage, "--help")
    assert result.exit_code == 0, result.output
    for option in ("--run", "--data", "--profile", "--set", "--seed", "--device", "--force", "--quiet"):
        assert option in result.output


@pytest.mark.parametrize("group", ["data", "eval"])
def test_groups_have_help(group: str) -> None:
    assert liid(group, "--help").exit_code == 0


def test_sigterm_stops_cleanly_without_a_partial_artifact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "liid_cli", "data", "demo", "--out", str(out), "--n-train", "5000", "-q"]
    )
    deadline = time.monotonic() + 60
    while not any(tmp_path.glob(".demo.tmp-*")):  # generation has started writing
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
