"""Faults around a stage: killed processes, outputs changed after the fact, unwritable run folders."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers import assert_one_line_error, liid
from tests.test_runner import TOY, ToyConfig

from liid_cli import artifacts
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256, write_json
from liid_cli.runner import StageSpec, run_stage


def _run(run_dir: Path, index: Path) -> dict:
    return run_stage(TOY, ToyConfig(factor=2, name="x"), run_dir=run_dir, index_path=index, seed=5)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """The `liid` logger's records (it does not propagate once the CLI has set up logging)."""
    monkeypatch.setattr(logging.getLogger("liid"), "propagate", True)
    caplog.set_level(logging.INFO, logger="liid")
    return caplog


def test_stale_temporary_folders_of_dead_processes_are_removed_live_ones_kept(
    tiny_demo: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    dead, live = _dead_pid(), os.getppid()
    for name in (f".proposals.tmp-{dead}", f".proposals.old-{dead}", f".proposals.tmp-{live}",
                 f".other.tmp-{dead}"):
        (run_dir / name).mkdir(parents=True)
        (run_dir / name / "partial.h5").write_bytes(b"half")
    _run(run_dir, tiny_demo / "index_train.json")
    left = sorted(p.name for p in run_dir.iterdir())
    assert left == sorted([artifacts.CACHE_DIR, "proposals", f".proposals.tmp-{live}", f".other.tmp-{dead}"])
    (run_dir / f".proposals.tmp-{dead}").mkdir()  # a later kill; the stage itself is up to date
    skipped = _run(run_dir, tiny_demo / "index_train.json")
    assert not (run_dir / f".proposals.tmp-{dead}").exists()
    assert skipped["timings"] == json.loads((run_dir / "proposals" / artifacts.MANIFEST).read_text())["timings"]


def test_atomic_file_writes_remove_stale_temporary_files(tmp_path: Path) -> None:
    stale = tmp_path / f".metrics.json.tmp-{_dead_pid()}"
    stale.write_text("{")
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("truncate", "has 0 bytes, the manifest recorded"),
        ("rewrite", "was modified after the stage wrote it"),
        ("delete", "result.txt is missing"),
        ("edit_hash", "does not match its checksum"),
    ],
)
def test_stage_reruns_when_its_outputs_no_longer_match_the_manifest(
    tiny_demo: Path, tmp_path: Path, logged: pytest.LogCaptureFixture, change: str, reason: str
) -> None:
    run_dir, index = tmp_path / "run", tiny_demo / "index_train.json"
    first = _run(run_dir, index)
    folder = artifacts.stage_dir(run_dir, "proposals")
    result = folder / "result.txt"
    if change == "truncate":
        result.write_bytes(b"")
    elif change == "rewrite":  # same size, new content and mtime
        result.write_text(result.read_text().upper())
    elif change == "delete":
        result.unlink()
    else:
        manifest = json.loads((folder / artifacts.MANIFEST).read_text())
        manifest["outputs"]["result.txt"]["sha256"] = "0" * 64
        (folder / artifacts.MANIFEST).write_text(json.dumps(manifest))
    again = _run(run_dir, index)
    assert again["timings"] != first["timings"]
    assert result.read_text() == "x:10"
    assert any(reason in r.getMessage() and "rerunning" in r.getMessage() for r in logged.records), logged.text


def test_stage_is_skipped_when_only_the_mtime_changed(tiny_demo: Path, tmp_path: Path) -> None:
    run_dir, index = tmp_path / "run", tiny_demo / "index_train.json"
    first = _run(run_dir, index)
    result = artifacts.stage_dir(run_dir, "proposals") / "result.txt"
    os.utime(result, ns=(1, 1))  # e.g. copied without keeping times: re-hashed, same content
    assert _run(run_dir, index)["timings"] == first["timings"]
    assert first["outputs"]["result.txt"]["sha256"] == file_sha256(result)


def test_unwritable_run_folder_is_one_line_error(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(LiidError, match=r"a_file/run: cannot write the run folder \(Not a directory\)"):
        _run(blocker / "run", tiny_demo / "index_train.json")
    run_dir = tmp_path / "locked"
    run_dir.mkdir()
    access = os.access  # as chmod a-w on the run folder would do for a user other than root:
    monkeypatch.setattr(os, "access", lambda path, mode: (Path(path) != run_dir or not mode & os.W_OK)
                        and access(path, mode))
    result = liid("proposals", "--data", tiny_demo / "index_train.json", "--run", run_dir, "-q")
    assert_one_line_error(result, f"{run_dir}: cannot write the run folder (permission denied)",
                          "make it writable", "--run")
    assert list(run_dir.iterdir()) == []


def _proposals_command(index: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "liid_cli", "proposals", "--data", str(index), "--run", str(run_dir),
            "--profile", "demo", "-q"]


def test_stage_killed_mid_run_leaves_nothing_after_the_rerun_and_the_same_output(
    tiny_demo: Path, tmp_path: Path
) -> None:
    index, killed = tiny_demo / "index_train.json", tmp_path / "killed"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_proposals_command(index, killed), env=env, stderr=subprocess.PIPE)
    tmp = killed / f".proposals.tmp-{process.pid}"
    deadline = time.monotonic() + 60
    while not tmp.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert tmp.is_dir() and not (killed / "proposals").exists(), "the kill did not land mid-run"
    assert liid(*_proposals_command(index, killed)[3:]).exit_code == 0
    assert [p.name for p in killed.iterdir() if p.name.startswith(".proposals.")] == []
    whole = tmp_path / "whole"
    assert liid(*_proposals_command(index, whole)[3:]).exit_code == 0
    output = artifacts.PROPOSALS_H5
    assert file_sha256(killed / "proposals" / output) == file_sha256(whole / "proposals" / output)


def test_permission_error_anywhere_in_a_command_is_one_line_error(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "index_train.json"

    def refuse(path: Path, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr("liid_cli.commands.data.write_index", refuse)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,labels\ntrain_0000.png,cat\n")
    result = liid("data", "folder", "--images", tiny_demo / "images", "--labels", labels,
                  "--out", tmp_path / "out", "-q")
    assert_one_line_error(result, f"{target}: permission denied", "chmod u+rw")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_installed_command_stopped_by_a_signal_says_so_and_removes_its_temp_folder(
    signum: int, tiny_demo: Path, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("liid")  # the console script pyproject.toml installs
    run_dir = tmp_path / "run"
    command = [str(script), *_proposals_command(tiny_demo / "index_train.json", run_dir)[3:]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tmp = run_dir / f".proposals.tmp-{process.pid}"
    deadline = time.monotonic() + 60
    while not tmp.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, output
    assert output.strip() == "error: interrupted; rerun the same command to continue", output
    assert not tmp.exists() and not (run_dir / "proposals").exists()


def test_json_never_holds_nan_or_infinity(tiny_demo: Path, tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    with pytest.raises(LiidError, match=r"out.json: not written, a value is NaN or infinite"):
        write_json(path, {"annotations": [{"score": float("nan")}]})
    assert not path.exists() and list(tmp_path.iterdir()) == []
    unmeasured = StageSpec(name="proposals", config_model=ToyConfig,
                           run=lambda config, context: {"recall": float("nan"), "gap": [float("inf")]})
    run_dir = tmp_path / "run"
    run_stage(unmeasured, ToyConfig(factor=1, name="x"), run_dir=run_dir,
              index_path=tiny_demo / "index_train.json")
    text = (run_dir / "proposals" / artifacts.MANIFEST).read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the manifest"))
    assert metrics["metrics"]["recall"] is None and metrics["metrics"]["gap"] == [None]
