"""One runner for every stage: fingerprint, skip when unchanged, `--force`, atomic output, manifest.

A stage writes into a temporary folder beside its final one; on success the runner writes
`manifest.json` last and renames the folder into place. A failure leaves neither a manifest nor a
partial output behind (resumable scratch, such as checkpoints, lives under `<run>/.cache/<stage>`);
the temporary folder of a killed process is removed by the next run of the stage. A finished stage
is skipped only while its outputs still match the manifest (outputs.why_changed).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from liid_cli import __version__, artifacts, registry
from liid_cli.config import StageConfig, config_to_yaml
from liid_cli.errors import LiidError
from liid_cli.fileio import (
    atomic_path,
    file_sha256,
    read_json,
    remove_path,
    remove_stale_siblings,
    text_sha256,
)
from liid_cli.log import log
from liid_cli.outputs import describe_outputs, manifest_text, why_changed

C = TypeVar("C", bound=StageConfig)

LIBRARIES = ("torch", "torchvision", "numpy", "h5py", "scikit-learn", "ortools", "pycocotools",
             "scikit-image", "pydantic", "typer")


@dataclass(frozen=True)
class StageContext:
    """What a stage's run() gets besides its config."""

    run_dir: Path
    out_dir: Path  # temporary folder; becomes the stage folder on success
    cache_dir: Path  # persistent scratch for resuming (survives failures, removed on success)
    index_path: Path
    seed: int
    device: str
    workers: int
    extra_inputs: dict[str, Path] = field(default_factory=dict)  # checked against StageSpec.inputs
    fingerprint: str = ""  # of config, seed, inputs and code: what a resume point must match
    resume: bool = False  # `--resume`: trainers continue from their resume point (resume.py)

    def upstream(self, stage: str) -> Path:
        """The finished folder of an upstream stage."""
        return artifacts.stage_dir(self.run_dir, stage)

    def input(self, declared: StageInput) -> Path | None:
        """The file given for one of the stage's declared inputs, or None."""
        return self.extra_inputs.get(declared.name)

    def required_input(self, declared: StageInput) -> Path:
        """The file of a required input (the runner refuses to start without it)."""
        path = self.extra_inputs.get(declared.name)
        if path is None:
            raise LiidError(declared.missing_message())
        return path


@dataclass(frozen=True)
class StageInput:
    """A file a stage reads besides its data set and upstream stages (a model, labels, boxes):
    named on the command line, fingerprinted into the stage's manifest."""

    name: str
    what: str  # what it is and how to give it, e.g. "a trained model: pass --model model_best.pt"
    required: bool = False

    def missing_message(self) -> str:
        return f"missing {self.name}, {self.what}"


@dataclass(frozen=True)
class StageSpec(Generic[C]):
    """A stage's code: its name (a registry entry), config model, plain run() function and the
    files it reads besides its data set and upstream stages."""

    name: str
    config_model: type[C]
    run: Callable[[C, StageContext], dict[str, Any]]
    inputs: tuple[StageInput, ...] = ()

    @property
    def upstream(self) -> tuple[str, ...]:
        return registry.stage(self.name).upstream

    def check_inputs(self, given: dict[str, Path]) -> None:
        """Every given input is declared (else a programming error) and every required one given."""
        declared = {item.name for item in self.inputs}
        unknown = sorted(set(given) - declared)
        if unknown:
            raise ValueError(f"stage {self.name} does not declare the inputs {unknown}")
        for item in self.inputs:
            if item.required and item.name not in given:
                raise LiidError(f"`liid {self.name}`: {item.missing_message()}")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus a hash of the package source, so code changes invalidate outputs."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=True,
        )
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "liid": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_manifest(stage_folder: Path) -> dict[str, Any] | None:
    path = stage_folder / artifacts.MANIFEST
    return read_json(path) if path.is_file() else None


def require_upstream(run_dir: Path, stage: str, index_fingerprint: str) -> dict[str, Any]:
    """The manifest of a finished upstream stage made from the same data set, or a clear error."""
    folder = artifacts.stage_dir(run_dir, stage)
    manifest = read_manifest(folder)
    if manifest is None:
        raise LiidError(
            f"missing {folder / artifacts.MANIFEST}: run `liid {stage} --run {run_dir}` first"
        )
    made_from = manifest.get("inputs", {}).get("index", {}).get("fingerprint")
    if made_from != index_fingerprint:
        raise LiidError(
            f"{folder} is stale: it was made from another data set index; "
            f"rerun `liid {stage} --run {run_dir} --force`"
        )
    return manifest


def index_from_upstream(run_dir: Path, stages: tuple[str, ...]) -> Path | None:
    """The data set index recorded by the first of `stages` that has finished, if any."""
    for stage in stages:
        manifest = read_manifest(artifacts.stage_dir(run_dir, stage))
        if manifest is not None:
            return Path(manifest["inputs"]["index"]["path"])
    return None


def run_stage(
    spec: StageSpec[C],
    config: C,
    *,
    run_dir: Path,
    index_path: Path | None,
    seed: int = 0,
    device: str = "cpu",
    workers: int = 1,
    force: bool = False,
    extra_inputs: dict[str, Path] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run `spec` unless an identical finished run exists; return the stage's manifest."""
    extra_inputs = dict(extra_inputs or {})
    spec.check_inputs(extra_inputs)
    if index_path is None:
        index_path = index_from_upstream(run_dir, (spec.name, *spec.upstream))
        if index_path is None:
            raise LiidError(f"no data set given: pass --data INDEX.json to `liid {spec.name}`")
    if not index_path.is_file():
        raise LiidError(f"{index_path}: data set index not found; run `liid data ...` to make it")
    index_fingerprint = file_sha256(index_path)
    inputs: dict[str, Any] = {"index": {"path": str(index_path), "fingerprint": index_fingerprint}}
    for stage in spec.upstream:
        manifest = require_upstream(run_dir, stage, index_fingerprint)
        inputs[stage] = {"fingerprint": manifest["fingerprint"]}
    for name, path in extra_inputs.items():
        if not path.exists():
            raise LiidError(f"{path}: input {name!r} not found; check the path")
        inputs[name] = {"path": str(path), "fingerprint": _path_fingerprint(path)}

    config_dict = config.model_dump(mode="json")
    fingerprint = text_sha256(json.dumps(
        {"stage": spec.name, "config": config_dict, "seed": seed, "inputs": inputs,
         "code": code_version()}, sort_keys=True,
    ))
    final = artifacts.stage_dir(run_dir, spec.name)
    _check_writable(run_dir)
    for stale in remove_stale_siblings(final):
        log.info(f"{spec.name}: removed {stale}, left by a process that no longer runs")
    existing = read_manifest(final)
    if existing is not None and existing.get("fingerprint") == fingerprint and not force:
        changed = why_changed(final, existing)
        if changed is None:
            log.info(f"{spec.name}: up to date in {final} (inputs, config, code and outputs unchanged; "
                     "--force reruns)")
            os.utime(final / artifacts.MANIFEST)
            return existing
        log.warning(f"{spec.name}: rerunning: {changed}")

    cache = artifacts.cache_dir(run_dir, spec.name)
    started = time.time()
    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        cache.mkdir(parents=True, exist_ok=True)
        (tmp / artifacts.RESOLVED_CONFIG).write_text(config_to_yaml(config))
        context = StageContext(
            run_dir=run_dir, out_dir=tmp, cache_dir=cache, index_path=index_path, seed=seed,
            device=device, workers=workers, extra_inputs=extra_inputs, fingerprint=fingerprint,
            resume=resume,
        )
        log.info(f"{spec.name}: running into {final}")
        metrics = spec.run(config, context)
        finished = time.time()
        manifest = {
            "schema": artifacts.SCHEMA_MANIFEST,
            "stage": spec.name,
            "fingerprint": fingerprint,
            "liid_version": __version__,
            "code_version": code_version(),
            "git_commit": git_commit(),
            "seed": seed,
            "device": device,
            "workers": workers,
            "config": config_dict,
            "inputs": inputs,
            "outputs": describe_outputs(tmp),
            "timings": {"started": started, "finished": finished, "seconds": finished - started},
            "metrics": metrics,
            "versions": library_versions(),
            "command": sys.argv,
        }
        (tmp / artifacts.MANIFEST).write_text(manifest_text(manifest))
    remove_path(cache)
    log.info(f"{spec.name}: done in {finished - started:.1f} s")
    return manifest


def _check_writable(run_dir: Path) -> None:
    """A one-line error unless the run folder exists (or can be made) and can be written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(run_dir, os.W_OK | os.X_OK)
        reason = "permission denied"
    except OSError as error:
        writable, reason = False, error.strerror or str(error)
    if not writable:
        raise LiidError(f"{run_dir}: cannot write the run folder ({reason}); make it writable "
                        "(chmod u+w) or pass another --run")


def _path_fingerprint(path: Path) -> str:
    if path.is_file():
        return file_sha256(path)
    manifest = read_manifest(path)
    if manifest is not None:
        return manifest["fingerprint"]
    return text_sha256(json.dumps(sorted(
        (str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file()
    )))
