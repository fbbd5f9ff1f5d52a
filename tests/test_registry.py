"""The stage registry is the one list of stages: the stage modules, the YAML files, the CLI and the
Makefile's order all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import liid
from liid_cli import registry
from liid_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]
MAKE_RULE = re.compile(r"^\$\(([A-Z0-9_]+)\)(?:-%)?/(\w+)/\$\(M\):(.*)$")
NOT_STAGES = {"viz"}  # stages/viz.yaml: `liid viz` redraws every time, outside the runner


def test_each_stage_module_is_registered_under_its_own_name() -> None:
    modules = {p.stem for p in (ROOT / "src/liid_cli/stages").glob("*.py")} - {"__init__"}
    assert modules == {registry.file_stem(name) for name in registry.names()}
    for entry in registry.STAGES:
        assert entry.spec().name == entry.name
        assert (ROOT / "stages" / entry.yaml_name).is_file()
    yamls = {p.name for p in (ROOT / "stages").glob("*.yaml")}
    assert yamls == {entry.yaml_name for entry in registry.STAGES} | {f"{n}.yaml" for n in NOT_STAGES}


def test_the_registry_lists_a_stage_after_what_it_reads() -> None:
    seen: set[str] = set()
    for entry in registry.STAGES:
        assert set(entry.upstream) <= seen, entry.name
        seen.add(entry.name)
    assert registry.chain("export-coco") == (
        "proposals", "train-cam", "train-mil", "dump", "cut", "export-coco")
    assert registry.chain_from("cut", "export-coco") == ("cut", "export-coco")
    assert len({entry.folder for entry in registry.STAGES}) == len(registry.STAGES)


def test_every_stage_is_a_command() -> None:
    commands = {command.name for command in app.registered_commands}
    assert {entry.cli.split()[1] for entry in registry.STAGES} <= commands
    listing = liid("stages")
    assert listing.exit_code == 0
    for entry in registry.STAGES:
        assert entry.name in listing.output and f"{entry.folder}/" in listing.output


def _makefile_rules() -> dict[tuple[str, str], tuple[set[str], set[str], str]]:
    """(variable, stage) -> (prerequisite stages under the same variable, YAML files, command)."""
    by_folder = {entry.folder: entry.name for entry in registry.STAGES}
    lines = (ROOT / "Makefile").read_text().splitlines()
    rules = {}
    for number, line in enumerate(lines):
        match = MAKE_RULE.match(line)
        if match is None or match.group(2) not in by_folder:
            continue
        variable, prerequisites = match.group(1), match.group(3).split()
        upstream = {
            by_folder[found.group(1)]
            for item in prerequisites
            if (found := re.fullmatch(rf"\$\({variable}\)/(\w+)/\$\(M\)", item))
        }
        yamls = {Path(item).name for item in prerequisites if item.startswith("stages/")}
        command = lines[number + 1].split()[1]
        rules[(variable, by_folder[match.group(2)])] = (upstream, yamls, command)
    return rules


def test_the_makefile_runs_each_stage_after_the_stages_it_reads() -> None:
    rules = _makefile_rules()
    assert len(rules) >= 10

    def reachable(variable: str, stage: str) -> set[str]:
        found: set[str] = set()
        for before in rules.get((variable, stage), (set(), set(), ""))[0]:
            found |= {before} | reachable(variable, before)
        return found

    for (variable, stage), (_, yamls, command) in rules.items():
        entry = registry.stage(stage)
        assert command == entry.name, (variable, stage)
        assert yamls == {entry.yaml_name}, (variable, stage)
        assert set(entry.upstream) <= reachable(variable, stage), (variable, stage)
