"""Every script in benchmarks/ runs at a tiny size and prints its numbers.

Benchmarks are never timed tests: these only smoke-run them (exit code 0 and their table printed)
so an API change cannot break one unnoticed. Each runs as its own process, as a person would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.proposal_fixture import run_demo_stage, write_fake_proposals

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str | Path) -> str:
    """Run benchmarks/<script> with `args`; its standard output (fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *map(str, args)],
        check=False,
        cwd=ROOT,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_bench_proposals() -> None:
    out = bench("bench_proposals.py", "--images", "1", "--count", "5", "--width", "160",
                "--height", "120")
    assert "liid: median CPU" in out and "s/image" in out



def test_proposal_ranking(tiny_demo: Path) -> None:
    out = bench("proposal_ranking.py", "--data", tiny_demo / "index_train.json", "--images", "2",
                "--top", "5", "--scales", "100", "--agreement", "0", "0.05", "--fill", "0")
    assert "median s/image: search" in out and "AR@5 ratio" in out
    rows = [line for line in out.splitlines() if line.startswith("100 ")]
    assert len(rows) == 2 and rows[0].endswith("1.00")

def test_bench_export_eval() -> None:
    out = bench("bench_export_eval.py", "--repeats", "1", "--images", "4", "--size", "96")
    assert "export-coco: median" in out and "evaluate_instances: median" in out
    assert "viz (grid" in out


def test_bench_mil() -> None:
    out = bench("bench_mil.py", "--case", "tf_efficientnet_lite0:64", "--warmup", "0",
                "--repeats", "1", "--proposals", "4")
    assert "MIL step" in out and "ratio" in out and "images/s" in out


def test_bench_train() -> None:
    out = bench("bench_train.py", "--iters", "1", "--profiles", "demo")
    assert "instance  demo     median" in out and "semantic  demo     median" in out


def test_bench_cut(tmp_path: Path) -> None:
    out = bench("bench_cut.py", "--images", "30", "--dim", "16", "--classes", "4", "--runs", "1",
                "--workers", "1", "--root", tmp_path)
    assert "1 run(s), medians" in out and "certified SOPs" in out


def test_bench_box2mask(tiny_demo: Path, tmp_path: Path) -> None:
    tiny_training = ["iterations=3", "batch_size=4", "crop_size=32"]
    tiny_rounds = ["retrain_iterations=3", "semantic.iterations=3", "semantic.batch_size=4",
                   "semantic.input_size=64"]
    out = bench(
        "bench_box2mask.py", "--data", tiny_demo / "index_train.json", "--run", tmp_path,
        "--baselines", "rect",
        *[part for setting in tiny_training for part in ("--train-set", setting)],
        *[part for setting in tiny_rounds for part in ("--set", setting)],
    )
    assert "mIoU" in out and "learned round 2" in out and "mIoU ratio" in out


@pytest.fixture(scope="module")
def mil_run(tiny_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with proposals (ground truth plus blobs), train-cam, train-mil and dump finished."""
    run, index = tmp_path_factory.mktemp("mil_accuracy") / "run", tiny_demo / "index_train.json"
    write_fake_proposals(run, index)
    run_demo_stage("train-cam", run, index, "save_cams=false")
    run_demo_stage("train-mil", run, index, "epochs=1")
    run_demo_stage("dump", run, index)
    return run


def test_mil_accuracy(mil_run: Path) -> None:
    out = bench("mil_accuracy.py", "--run", mil_run, "--oracle-epochs", "1")
    assert "(a) CAM" in out and "(c) MIL label-masked" in out
    assert "oracle epoch 1/1" in out


def test_bench_cam_scoring(mil_run: Path) -> None:
    out = bench("bench_cam_scoring.py", "--run", mil_run, "--images", "3")
    assert "CAM forward" in out and "median" in out and "ratio" in out
