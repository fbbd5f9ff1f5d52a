"""Stage configuration: `stages/<stage>.yaml` (paper defaults + profiles) -> pydantic model.

Resolution order: the file's `defaults`, then `profiles.<name>`, then `--config FILE`, then each
`--set key=value` (dotted keys; a leading `<stage>.` is accepted). Unknown keys are errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from liid_cli import registry
from liid_cli.errors import LiidError

STAGES_ENV = "LIID_STAGES"

# The ranges of settings: every number in a stage YAML is declared with one of these (or its own
# Field bounds), so a value out of range is refused the same way from the YAML, --config and --set.
Probability = Annotated[float, Field(ge=0.0, le=1.0)]  # probabilities, IoUs, shares, scores
NonNegative = Annotated[float, Field(ge=0.0)]  # weights, powers
Positive = Annotated[float, Field(gt=0.0)]  # sizes, scales, tolerances, time limits
Count = Annotated[int, Field(ge=1)]  # counts and pixel sizes
CountOrOff = Annotated[int, Field(ge=0)]  # counts where 0 means none or off


class StageConfig(BaseModel):
    """Base of every stage's config: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=StageConfig)


def stages_dir() -> Path:
    """Where the stage YAML files live: $LIID_STAGES, ./stages, or the source checkout's."""
    candidates = []
    if os.environ.get(STAGES_ENV):
        candidates.append(Path(os.environ[STAGES_ENV]))
    candidates.append(Path.cwd() / "stages")
    candidates.append(Path(__file__).resolve().parents[2] / "stages")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise LiidError(
        f"no stages/ folder with the stage YAML files found (looked in {', '.join(map(str, candidates))}); "
        f"run from the liid checkout or set {STAGES_ENV}"
    )


def stage_yaml(stage: str) -> Path:
    return stages_dir() / f"{registry.file_stem(stage)}.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise LiidError(f"{path}: config file not found; check the path") from None
    except yaml.YAMLError as error:
        raise LiidError(f"{path}: not valid YAML ({error}); fix the file") from None
    if not isinstance(data, dict):
        raise LiidError(f"{path}: expected a mapping of settings at the top level")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_override(data: dict[str, Any], assignment: str, stage: str) -> dict[str, Any]:
    """Apply one `key.sub=value` override; the value is parsed as YAML (numbers, lists, bools)."""
    if "=" not in assignment:
        raise LiidError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set delta=3")
    raw = assignment.split("=", 1)[1]
    parts = _override_key(assignment, stage)
    value = yaml.safe_load(raw) if raw.strip() else None
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return deep_merge(data, nested)


def load_stage_config(
    stage: str,
    model: type[C],
    *,
    profile: str | None = None,
    config_file: Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> C:
    """Resolve the config of `stage` and validate it against `model`."""
    path = stage_yaml(stage)
    document = _read_yaml(path)
    unknown = set(document) - {"defaults", "profiles"}
    if unknown:
        raise LiidError(f"{path}: unknown top-level keys {sorted(unknown)}; use `defaults` and `profiles`")
    data: dict[str, Any] = document.get("defaults") or {}
    if profile:
        profiles = document.get("profiles") or {}
        if profile not in profiles:
            raise LiidError(
                f"{path}: no profile {profile!r} (known: {', '.join(sorted(profiles)) or 'none'})"
            )
        data = deep_merge(data, profiles[profile] or {})
    if config_file is not None:
        data = deep_merge(data, _read_yaml(config_file))
    for assignment in overrides:
        data = apply_override(data, assignment, stage)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = tuple(str(part) for part in first["loc"])
        problem = f"{'.'.join(loc)} {_requirement(first)}"
        shown = _shown(path)
        for assignment in reversed(overrides):
            key = _override_key(assignment, stage)
            if loc[: len(key)] == key or key[: len(loc)] == loc:
                raise LiidError(f"--set {assignment}: {problem} ({shown})") from None
        if config_file is not None and _holds(_read_yaml(config_file), loc):
            raise LiidError(f"{config_file}: {problem} ({shown})") from None
        if profile and _holds((document.get("profiles") or {}).get(profile) or {}, loc):
            raise LiidError(f"{shown} (profile {profile}): {problem}") from None
        raise LiidError(f"{shown}: {problem}") from None


def _requirement(error: Any) -> str:
    """What a pydantic error asks of the value, in a few words."""
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}
    context = error.get("ctx") or {}
    if error["type"] in bounds:
        bound = next(iter(context.values()))
        return f"must be {bounds[error['type']]} {bound:g}"
    if error["type"] == "extra_forbidden":
        return "is not a setting of this stage"
    if error["type"] == "missing":
        return "is missing"
    return f"is invalid: {error['msg']}"


def _override_key(assignment: str, stage: str) -> tuple[str, ...]:
    parts = tuple(assignment.split("=", 1)[0].strip().split("."))
    if parts[0] in (stage, stage.replace("-", "_")) and len(parts) > 1:
        return parts[1:]
    return parts


def _holds(layer: Any, loc: tuple[str, ...]) -> bool:
    """Whether a settings layer sets the value at `loc` (dict keys, list indexes)."""
    for part in loc:
        if isinstance(layer, dict) and part in layer:
            layer = layer[part]
        elif isinstance(layer, list) and part.isdigit() and int(part) < len(layer):
            layer = layer[int(part)]
        else:
            return False
    return True


def _shown(path: Path) -> Path:
    """`path` relative to the working folder where it lies below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def recorded_stage_config(stage: str, model: type[C], recorded: dict[str, Any]) -> C:
    """The config a finished stage recorded in its manifest. A key added to the stage since that
    run takes the YAML's `defaults`, which keep the behaviour from before the key existed."""
    defaults = _read_yaml(stage_yaml(stage)).get("defaults") or {}
    return model.model_validate(deep_merge(defaults, recorded))


def config_to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
