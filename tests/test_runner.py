"""The stage runner and config loading, on a toy stage with a toy stages/ folder."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel

from liid_cli import artifacts, registry
from liid_cli.config import Count, StageConfig, load_stage_config, recorded_stage_config
from liid_cli.errors import LiidError
from liid_cli.fileio import read_json
from liid_cli.runner import StageContext, StageInput, StageSpec, run_stage


class ToyConfig(StageConfig):
    factor: int
    name: str
    fail_after_write: bool = False


def _toy_run(config: ToyConfig, context: StageContext) -> dict[str, Any]:
    (context.out_dir / "result.txt").write_text(f"{config.name}:{config.factor * context.seed}")
    if config.fail_after_write:
        raise RuntimeError("injected failure midway")
    return {"value": config.factor * context.seed}


TOY = StageSpec(name="proposals", config_model=ToyConfig, run=_toy_run)
TOY_DOWNSTREAM = StageSpec(name="train-cam", config_model=ToyConfig, run=_toy_run)


@pytest.fixture
def stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "stages"
    folder.mkdir()
    (folder / "proposals.yaml").write_text(
        "defaults:\n  factor: 2\n  name: paper\nprofiles:\n  demo:\n    factor: 3\n"
    )
    monkeypatch.setenv("LIID_STAGES", str(folder))
    return folder


def test_config_layers_defaults_profile_file_and_overrides(stages: Path, tmp_path: Path) -> None:
    assert load_stage_config("proposals", ToyConfig).factor == 2
    assert load_stage_config("proposals", ToyConfig, profile="demo").factor == 3
    extra = tmp_path / "mine.yaml"
    extra.write_text("name: mine\n")
    config = load_stage_config("proposals", ToyConfig, profile="demo", config_file=extra,
                               overrides=["proposals.factor=7"])
    assert (config.factor, config.name) == (7, "mine")


def test_a_recorded_config_from_before_a_key_existed_takes_the_yaml_default(stages: Path) -> None:
    assert recorded_stage_config("proposals", ToyConfig, {"factor": 5}) == ToyConfig(
        factor=5, name="paper"
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"overrides": ["typo=1"]}, "typo"),
        ({"overrides": ["factor=many"]}, "factor"),
        ({"profile": "huge"}, "no profile 'huge'"),
        ({"overrides": ["factor"]}, "KEY=VALUE"),
    ],
)
def test_config_errors_name_the_setting(stages: Path, kwargs: dict, fragment: str) -> None:
    with pytest.raises(LiidError, match=fragment):
        load_stage_config("proposals", ToyConfig, **kwargs)


def _run(spec: StageSpec, run_dir: Path, index: Path, **config: Any) -> dict[str, Any]:
    return run_stage(spec, ToyConfig(**({"factor": 2, "name": "x"} | config)), run_dir=run_dir,
                     index_path=index, seed=5)


def test_failure_midway_leaves_no_manifest_and_no_output(tiny_demo: Path, tmp_path: Path) -> None:
    index = tiny_demo / "index_train.json"
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="injected"):
        _run(TOY, run_dir, index, fail_after_write=True)
    assert not artifacts.stage_dir(run_dir, "proposals").exists()
    assert [p.name for p in run_dir.iterdir()] == [artifacts.CACHE_DIR]
    manifest = _run(TOY, run_dir, index)
    folder = artifacts.stage_dir(run_dir, "proposals")
    assert (folder / "result.txt").read_text() == "x:10"
    assert read_json(folder / artifacts.MANIFEST) == manifest
    assert manifest["seed"] == 5 and manifest["metrics"] == {"value": 10}
    assert manifest["config"]["factor"] == 2 and "torch" in manifest["versions"]
    assert "result.txt" in manifest["outputs"]
    assert (folder / artifacts.RESOLVED_CONFIG).is_file()


def test_skip_when_unchanged_and_force(tiny_demo: Path, tmp_path: Path) -> None:
    index = tiny_demo / "index_train.json"
    run_dir = tmp_path / "run"
    first = _run(TOY, run_dir, index)
    assert _run(TOY, run_dir, index)["timings"] == first["timings"]
    changed = _run(TOY, run_dir, index, factor=4)
    assert changed["fingerprint"] != first["fingerprint"]
    forced = run_stage(TOY, ToyConfig(factor=4, name="x"), run_dir=run_dir, index_path=index, seed=5,
                       force=True)
    assert forced["fingerprint"] == changed["fingerprint"]
    assert forced["timings"] != changed["timings"]


def test_missing_and_stale_upstream_name_the_command(tiny_demo: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(LiidError, match=r"run `liid proposals --run .*` first"):
        _run(TOY_DOWNSTREAM, run_dir, tiny_demo / "index_train.json")
    _run(TOY, run_dir, tiny_demo / "index_train.json")
    downstream = _run(TOY_DOWNSTREAM, run_dir, tiny_demo / "index_train.json")
    assert downstream["inputs"]["proposals"]["fingerprint"]
    with pytest.raises(LiidError, match=r"stale.*liid proposals .*--force"):
        _run(TOY_DOWNSTREAM, run_dir, tiny_demo / "index_val.json")
    again = run_stage(TOY_DOWNSTREAM, ToyConfig(factor=2, name="x"), run_dir=run_dir, index_path=None, seed=5)
    assert again["inputs"]["index"]["path"].endswith("index_train.json")


def test_declared_inputs_are_checked_and_fingerprinted(tiny_demo: Path, tmp_path: Path) -> None:
    model = StageInput("model", "a model: pass --model M.pt", required=True)
    notes = StageInput("notes", "notes: pass --notes N.txt")
    seen: list[Path | None] = []

    def reads_inputs(config: ToyConfig, context: StageContext) -> dict[str, Any]:
        seen.append(context.input(notes))
        return _toy_run(config, context) | {"model": str(context.required_input(model))}

    spec = StageSpec(name="proposals", config_model=ToyConfig, run=reads_inputs,
                     inputs=(model, notes))
    index, run_dir = tiny_demo / "index_train.json", tmp_path / "run"

    def run(**inputs: Path) -> dict[str, Any]:
        return run_stage(spec, ToyConfig(factor=2, name="x"), run_dir=run_dir, index_path=index,
                         extra_inputs=inputs)

    with pytest.raises(LiidError, match=r"`liid proposals`: missing model, a model: pass --model"):
        run()
    with pytest.raises(ValueError, match=r"does not declare the inputs \['modle'\]"):
        run(modle=index)  # a typo in a command is caught, not ignored
    weights = tmp_path / "m.pt"
    weights.write_text("one")
    first = run(model=weights)
    assert seen == [None] and first["inputs"]["model"]["path"] == str(weights)
    weights.write_text("two")  # a changed input file reruns the stage
    assert run(model=weights)["fingerprint"] != first["fingerprint"]


def _numbers_without_a_range(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted names of `model`'s int and float settings (and of those inside lists, tuples and
    nested models) that declare no bound."""
    unbounded = []
    for name, field in model.model_fields.items():
        for annotation in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                unbounded += _numbers_without_a_range(annotation, f"{prefix}{name}.")
        if field.annotation in (int, float) and not any(
            isinstance(m, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le,
                           annotated_types.Lt)) for m in field.metadata
        ):
            unbounded.append(prefix + name)
        elements = typing.get_args(field.annotation)
        if typing.get_origin(field.annotation) in (list, tuple) and (int in elements or float in elements):
            unbounded.append(prefix + name)
    return unbounded


def test_every_number_in_every_stage_yaml_has_a_declared_range() -> None:
    from liid_cli.viz.run import VizConfig

    models = [registry.stage(stage).spec().config_model for stage in registry.names()]
    unbounded = {model.__name__: _numbers_without_a_range(model) for model in [*models, VizConfig]}
    assert {name: found for name, found in unbounded.items() if found} == {}


def test_a_value_out_of_range_is_refused_the_same_way_from_every_layer(tmp_path: Path) -> None:
    from liid_cli.stages.cut import CutConfig
    from liid_cli.stages.export_coco import ExportCocoConfig

    with pytest.raises(LiidError) as from_set:
        load_stage_config("cut", CutConfig, overrides=["delta=-5"])
    assert str(from_set.value) == "--set delta=-5: delta must be >= 0 (stages/cut.yaml)"
    config_file = tmp_path / "mine.yaml"
    config_file.write_text("nms_iou: 1.5\n")
    with pytest.raises(LiidError) as from_file:
        load_stage_config("export-coco", ExportCocoConfig, config_file=config_file)
    assert str(from_file.value) == f"{config_file}: nms_iou must be <= 1 (stages/export_coco.yaml)"
    with pytest.raises(LiidError, match=r"--set milestones=\[0\]: milestones.0 must be >= 1"):
        from liid_cli.stages.train import TrainConfig

        load_stage_config("train", TrainConfig, overrides=["milestones=[0]"])


def test_a_value_out_of_range_in_the_stage_yaml_names_the_file_and_profile(
    stages: Path, tmp_path: Path
) -> None:
    class Bounded(StageConfig):
        factor: Count
        name: str

    (stages / "proposals.yaml").write_text(
        "defaults:\n  factor: 2\n  name: paper\nprofiles:\n  demo:\n    factor: 0\n"
    )
    with pytest.raises(LiidError, match=r"proposals.yaml \(profile demo\): factor must be >= 1$"):
        load_stage_config("proposals", Bounded, profile="demo")
