"""Stage configuration: `stages/<stage>.yaml` (paper defaults + profiles) -> pydantic model.

Resolution order: the file's `defaults`, then `profiles.<name>`, then `--config FILE`, then each
`--set key=value` (dotted keys; a leading `<stage>.` is accepted). Unknown keys are errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from liid_cli import registry
from liid_cli.errors import LiidError

STAGES_ENV = "LIID_STAGES"


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
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] in (stage, stage.replace("-", "_")) and len(parts) > 1:
        parts = parts[1:]
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
        where = ".".join(str(p) for p in first["loc"])
        source = f"{path}" + (f" + {config_file}" if config_file else "") + (" + --set" if overrides else "")
        raise LiidError(f"{source}: setting {where!r}: {first['msg']}") from None


def recorded_stage_config(stage: str, model: type[C], recorded: dict[str, Any]) -> C:
    """The config a finished stage recorded in its manifest. A key added to the stage since that
    run takes the YAML's `defaults`, which keep the behaviour from before the key existed."""
    defaults = _read_yaml(stage_yaml(stage)).get("defaults") or {}
    return model.model_validate(deep_merge(defaults, recorded))


def config_to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
