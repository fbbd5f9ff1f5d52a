"""Options shared by every stage command, and the one way a command runs its stage.

`stage_command` adds the common options (run folder, data set, profile, config, overrides, seed,
device, workers, force, quiet) to a command function that takes `common: Common` first, so each
command only declares what is special to it.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from liid_cli import artifacts, registry
from liid_cli.config import load_stage_config
from liid_cli.device import DeviceChoice, resolve_device
from liid_cli.errors import MissingTruth, user_errors
from liid_cli.log import setup_logging
from liid_cli.runner import StageSpec, run_stage

RunOption = Annotated[Path, typer.Option("--run", help="Run folder; each stage writes a sub-folder.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted run from its last checkpoint; it ends as an "
    "uninterrupted run would.")]
DeviceOption = Annotated[DeviceChoice, typer.Option("--device", help="auto takes the GPU when there is one.")]

IfTruthOption = Annotated[
    bool,
    typer.Option(
        "--if-truth",
        help="Skip with a note (exit 0) when the data set has no ground truth, e.g. a folder of "
        "photos with tags (make pipeline / make real use this).",
    ),
]


@contextmanager
def skipped_without_truth(skip: bool) -> Iterator[None]:
    """With `skip`, a data set without ground truth ends the command with a note, not an error."""
    try:
        yield
    except MissingTruth as missing:
        if not skip:
            raise
        Console().print(f"skipped: {missing}", highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Common:
    run: Path
    data: Path | None
    profile: str | None
    config: Path | None
    set: list[str]
    seed: int
    device: DeviceChoice
    workers: int
    force: bool
    quiet: bool
    resume: bool = False  # trainers only (stage_command(..., resumable=True))


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


COMMON_PARAMETERS = [
    _option("run", RunOption, artifacts.DEFAULT_RUN),
    _option("data", Annotated[Path | None, typer.Option(
        "--data", help="Data set index (index_<split>.json from `liid data`). "
        "Default: the one the upstream stage used.")], None),
    _option("profile", Annotated[str | None, typer.Option(
        "--profile", help="A profile of stages/<stage>.yaml, e.g. `demo` (small, CPU-friendly).")], None),
    _option("config", Annotated[Path | None, typer.Option(
        "--config", help="YAML of settings applied over the stage defaults and profile.")], None),
    _option("set", Annotated[list[str], typer.Option(
        "--set", help="Override one setting, KEY=VALUE with dotted keys (repeatable).")], []),
    _option("seed", Annotated[int, typer.Option("--seed", help="Random seed, recorded in the manifest.")], 0),
    _option("device", DeviceOption, DeviceChoice.auto),
    _option("workers", Annotated[int, typer.Option(
        "--workers", min=1, help="Worker processes for data loading / parallel work.")], 1),
    _option("force", Annotated[bool, typer.Option(
        "--force", help="Rerun even if inputs, config and code are unchanged.")], False),
    _option("quiet", QuietOption, False),
]


def stage_command(
    app: typer.Typer, name: str, *, resumable: bool = False
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `func(common, **own_options)` as `liid <name>` with the common options added,
    and `--resume` for a trainer."""
    resume = [_option("resume", ResumeOption, False)] if resumable else []
    common_parameters = [*COMMON_PARAMETERS, *resume]
    common_names = [p.name for p in common_parameters]

    def decorator(func: Callable[..., None]) -> Callable[..., None]:
        # Resolve string annotations (modules using `from __future__ import annotations`) in the
        # command's own module, since typer evaluates them in this wrapper's module otherwise.
        hints = typing.get_type_hints(func, include_extras=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(func).parameters.values() if p.name != "common"
        ]

        def command(**kwargs: Any) -> None:
            common = Common(**{key: kwargs.pop(key) for key in common_names})
            # Under torchrun only rank 0 reports; the other ranks train alongside it.
            setup_logging(common.quiet or int(os.environ.get("RANK", "0")) != 0)
            func(common, **kwargs)

        parameters = own + common_parameters
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__ = func.__doc__
        command.__name__ = func.__name__
        app.command(name)(user_errors(command))
        return func

    return decorator


def run_registered(
    name: str, common: Common, *, overrides: list[str] | None = None,
    extra_inputs: dict[str, Path] | None = None,
) -> dict[str, Any]:
    """Resolve the config of the registered stage `name` and run it through the runner."""
    spec: StageSpec[Any] = registry.stage(name).spec()
    config = load_stage_config(
        spec.name, spec.config_model, profile=common.profile, config_file=common.config,
        overrides=[*common.set, *(overrides or [])],
    )
    return run_stage(
        spec, config, run_dir=common.run, index_path=common.data, seed=common.seed,
        device=resolve_device(common.device), workers=common.workers, force=common.force,
        extra_inputs=extra_inputs, resume=common.resume,
    )


def val_index_beside(index: Path | None) -> Path | None:
    """index_val.json in the folder of a training index, when it exists and is another file."""
    if index is None:
        return None
    candidate = artifacts.index_path(index.parent, "val")
    return candidate if candidate.is_file() and candidate.resolve() != index.resolve() else None
