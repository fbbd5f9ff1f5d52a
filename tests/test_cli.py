"""The command line: every stage is registered and documents itself."""

from __future__ import annotations

import pytest

from tests.helpers import liid

STAGES = ["proposals", "train-cam", "train-mil", "dump", "cut", "export-coco", "train", "predict",
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
