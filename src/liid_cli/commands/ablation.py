"""Command: `liid ablation`, the paper's Table 8 on any finished run; each variant reruns only the
stages its change affects.

A variant's run folder links the base run's unaffected upstream stages (proposals, CAM, and for
graph-only variants the MIL network and dump), reruns the rest with one override, and its pseudo
labels are evaluated into the base run as `eval/ablation_<variant>/`, so `liid eval compare`, the
ablation table and the report show them beside the full method.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from liid_cli import artifacts, registry
from liid_cli.commands.common import Common, run_registered, stage_command
from liid_cli.errors import LiidError
from liid_cli.evaluation.runs import evaluate_run_instances
from liid_cli.log import console, log
from liid_cli.runner import index_from_upstream

LIID_CHAIN = registry.chain("export-coco")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: tuple[str, ...]
    graph_only: bool = False  # True: only cut onwards reruns

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages the variant reruns; it links the earlier ones of the LIID chain."""
        return registry.chain_from("cut" if self.graph_only else "train-mil", "export-coco")


VARIANTS: tuple[Variant, ...] = (
    Variant("no_att", "without L_Att", ("loss.attention=false",)),
    Variant("no_mil", "without L_MIL", ("loss.mil=false",)),
    Variant("no_cent", "without L_Cent", ("loss.centre=false",)),
    Variant("no_graph", "without the graph (argmax)", ("solver=argmax",), graph_only=True),
    Variant("mask_pooling", "mask pooling for R", ("loss.pooling=mask",)),
    Variant("delta_1", "delta = 1", ("delta=1",), graph_only=True),
    Variant("delta_2", "delta = 2", ("delta=2",), graph_only=True),
    Variant("eta_0.75", "eta = 0.75 (the paper's)", ("loss.eta=0.75",)),
    Variant("eta_1.0", "eta = 1.0", ("loss.eta=1.0",)),
)


def _link_upstream(base_run: Path, variant_run: Path, stages: tuple[str, ...]) -> None:
    variant_run.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        source = artifacts.stage_dir(base_run, stage).resolve()
        link = artifacts.stage_dir(variant_run, stage)
        if link.is_symlink() and link.resolve() == source:
            continue
        if link.is_symlink():
            link.unlink()
        os.symlink(source, link, target_is_directory=True)


def run_variant(base: Common, variant: Variant, root: Path) -> dict[str, Any]:
    """Run one variant into `root/<name>`; return its pseudo-label metrics record."""
    variant_run = root / variant.name
    first = variant.stages[0]
    _link_upstream(base.run, variant_run, LIID_CHAIN[: LIID_CHAIN.index(first)])
    for stage in variant.stages:
        overrides = list(variant.overrides) if stage == first else []
        run_registered(stage, replace(base, run=variant_run, data=None), overrides=overrides)
    pseudo = artifacts.stage_dir(variant_run, "export-coco") / artifacts.PSEUDO_INSTANCES_JSON
    _, record = evaluate_run_instances(
        base.run, source="pseudo", predictions=pseudo,
        index_path=index_from_upstream(base.run, ("export-coco",)),
        name=f"ablation_{variant.name}",
    )
    log.info(f"ablation {variant.name} ({variant.description}): AP50 {record['metrics']['AP50']:.3f}")
    return record


def run_ablation(base: Common, root: Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every (or the named) variant of Table 8 against the finished base run `base.run`."""
    chosen = [v for v in VARIANTS if names is None or v.name in names]
    return {variant.name: run_variant(base, variant, root) for variant in chosen}


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "ablation")
    def ablation(
        common: Common,
        out: Annotated[Path, typer.Option("--out", help="Folder of the variants' runs.")] = Path(
            "runs/ablation"
        ),
        only: Annotated[
            list[str] | None, typer.Option("--only", help="Run only these variants (repeatable).")
        ] = None,
    ) -> None:
        """Table 8 of the paper: rerun the pipeline without each loss, without the graph, with mask
        pooling, delta in {1, 2} and eta in {0.75, 1.0}, against the finished run --run (the full
        method). Each variant reuses the stages its change does not affect; pseudo-label metrics go
        to <run>/eval/ablation_<variant>/ and the table is printed."""
        from liid_cli.evaluation.runs import run_evaluations
        from liid_cli.evaluation.tables import compare_table

        known = {v.name for v in VARIANTS}
        unknown = sorted(set(only or []) - known)
        if unknown:
            raise LiidError(f"--only {', '.join(unknown)}: unknown variant; choose from {', '.join(sorted(known))}")
        if common.set:
            raise LiidError("--set does not apply to `liid ablation`; each variant sets its own override")
        run_ablation(common, out, only)
        records = run_evaluations(common.run)
        rows = {k: v for k, v in records.items() if k == "pseudo_labels" or k.startswith("ablation_")}
        console.print(compare_table([(str(common.run), rows)]))
