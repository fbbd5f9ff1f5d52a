"""Shared fixtures: a tiny demo data set made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from liid_cli.data.demo import DemoSpec, generate

TINY = DemoSpec(n_train=24, n_val=8, size=96, seed=3)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo data set (24 train, 8 val images of ~96 px); treat it as read-only."""
    out = tmp_path_factory.mktemp("data") / "demo"
    generate(out, TINY)
    return out
