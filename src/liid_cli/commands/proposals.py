"""Commands: `liid proposals`, `liid eval proposals`."""

from pathlib import Path
from typing import Annotated

import typer

from liid_cli import artifacts
from liid_cli.commands.common import (
    Common,
    IfTruthOption,
    QuietOption,
    RunOption,
    run_registered,
    skipped_without_truth,
    stage_command,
)
from liid_cli.config import load_stage_config
from liid_cli.data.index import parse_part
from liid_cli.device import resolve_device
from liid_cli.errors import LiidError, user_errors
from liid_cli.log import log, setup_logging
from liid_cli.runner import index_from_upstream

IMPORT_SUFFIX_METHODS = {".mat": "mcg", ".png": "label_png"}


def import_method(path: Path) -> str:
    """The importer for `--import PATH`: a .json file, or a folder of .mat or .png files."""
    if path.is_file() and path.suffix == ".json":
        return "rle_json"
    if path.is_dir():
        suffixes = {
            p.suffix.lower() for p in path.iterdir() if p.suffix.lower() in IMPORT_SUFFIX_METHODS
        }
        if len(suffixes) == 1:
            return IMPORT_SUFFIX_METHODS[suffixes.pop()]
    raise LiidError(
        f"{path}: --import expects a COCO-style RLE .json file, or a folder of MCG .mat files "
        "or of label .png files (one per image)"
    )


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @stage_command(app, "proposals")
    def proposals(
        common: Common,
        import_from: Annotated[
            Path | None,
            typer.Option(
                "--import",
                help="Import proposals instead of selective search: an RLE .json (COCO "
                "results style), or a folder of MCG <image>.mat or label <image>.png files.",
            ),
        ] = None,
        refine_masks: Annotated[
            Path | None,
            typer.Option(
                "--refine-masks",
                help="A box-to-mask checkpoint (`liid train-box2mask`, e.g. "
                "<run>/box2mask_model/box2mask.pt): replace each proposal's mask by the "
                "learned mask of its box.",
            ),
        ] = None,
        allow_seen_classes: Annotated[
            bool,
            typer.Option(
                "--allow-seen-classes",
                help="With --refine-masks: accept a model trained on masks of this data set's "
                "classes; the run is then recorded as not weakly supervised.",
            ),
        ] = False,
        shard: Annotated[
            str | None,
            typer.Option(
                "--shard",
                help="i/n: compute only part i of n into <run>/proposal_parts/; a later "
                "run without --shard joins the parts and computes what is missing.",
            ),
        ] = None,
    ) -> None:
        """Segment-based object proposals with masks (selective search or imported).

        Writes <run>/proposals/proposals.h5.
        """
        from liid_cli.stages import proposals as stage

        overrides: list[str] = []
        if import_from is not None:
            if not import_from.exists():
                raise LiidError(f"{import_from}: --import path not found; check the path")
            overrides.append(f"method={import_method(import_from)}")
        if allow_seen_classes:
            if refine_masks is None:
                raise LiidError("--allow-seen-classes applies only with --refine-masks BOX2MASK.pt")
            overrides.append("refine.allow_seen_classes=true")
        extra = {
            name: path
            for name, path in (("source", import_from), ("refine_masks", refine_masks))
            if path is not None
        } or None
        if shard is None:
            run_registered("proposals", common, overrides=overrides, extra_inputs=extra)
            return
        index, count = parse_part(shard, "--shard")
        config = load_stage_config(
            "proposals",
            stage.ProposalsConfig,
            profile=common.profile,
            config_file=common.config,
            overrides=[*common.set, *overrides],
        )
        data = common.data or index_from_upstream(common.run, stage.SPEC.upstream)
        if data is None:
            raise LiidError("no data set given: pass --data INDEX.json to `liid proposals`")
        path = stage.run_shard(
            config,
            index_path=data,
            run_dir=common.run,
            seed=common.seed,
            workers=common.workers,
            shard=index,
            count=count,
            source=import_from,
            refine_model=refine_masks,
            device=resolve_device(common.device),
        )
        log.info(
            f"proposals: shard {index}/{count} written to {path}; run `liid proposals` without "
            "--shard (same settings) to join the parts"
        )

    @eval_app.command("proposals")
    @user_errors
    def eval_proposals(
        run: RunOption = artifacts.DEFAULT_RUN,
        proposals: Annotated[
            Path | None,
            typer.Option("--proposals", help="Any proposals.h5 to evaluate instead of the run's."),
        ] = None,
        data: Annotated[
            Path | None,
            typer.Option(
                "--data",
                help="Data set index whose ground truth to use. Default: the proposals' own.",
            ),
        ] = None,
        gt: Annotated[
            Path | None,
            typer.Option(
                "--gt", help="A COCO instances ground-truth file instead of the data set's."
            ),
        ] = None,
        name: Annotated[
            str | None,
            typer.Option("--name", help="Folder name under <run>/eval/ for metrics.json."),
        ] = None,
        if_truth: IfTruthOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Proposal quality vs ground truth: recall at IoU 0.5/0.7 and ABO per proposal count."""
        from liid_cli.evaluation.proposals import evaluate_run_proposals, print_table

        setup_logging(quiet)
        with skipped_without_truth(if_truth):
            path, record = evaluate_run_proposals(
                run, proposals=proposals, gt=gt, index_path=data, name=name
            )
            print_table(record["metrics"], path)
