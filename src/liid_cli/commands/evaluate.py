"""Commands: `liid eval instances`, `liid eval semantic`, `liid eval labels`, `liid eval compare`.

(`liid eval proposals` lives in proposals.py.) Evaluation only reads artifacts; each call rewrites
`<run>/eval/<name>/metrics.json`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from liid_cli import artifacts
from liid_cli.commands.common import IfTruthOption, QuietOption, RunOption, skipped_without_truth
from liid_cli.errors import LiidError, user_errors
from liid_cli.log import setup_logging

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data set index whose ground truth to use. Default: the one the evaluated stage used.",
    ),
]
GtOption = Annotated[
    Path | None,
    typer.Option("--gt", help="A COCO instances ground-truth file instead of the data set's."),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="Folder name under <run>/eval/ for metrics.json (e.g. to keep several evaluations).",
    ),
]


class SourceChoice(str, Enum):
    pseudo = "pseudo"
    predictions = "predictions"


class IouChoice(str, Enum):
    segm = "segm"
    bbox = "bbox"


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @eval_app.command("instances")
    @user_errors
    def instances(
        run: RunOption = artifacts.DEFAULT_RUN,
        source: Annotated[
            SourceChoice,
            typer.Option(
                "--source",
                help="pseudo: the run's export-coco pseudo labels; "
                "predictions: the run's predict output.",
            ),
        ] = SourceChoice.pseudo,
        predictions: Annotated[
            Path | None,
            typer.Option(
                "--predictions", help="Any COCO results list or instances json to evaluate instead."
            ),
        ] = None,
        gt: GtOption = None,
        data: DataOption = None,
        name: NameOption = None,
        iou_type: Annotated[
            IouChoice, typer.Option("--iou-type", help="Mask (segm) or box IoU.")
        ] = IouChoice.segm,
        show_classes: Annotated[
            bool, typer.Option("--per-class", help="Also print AP per class.")
        ] = False,
        if_truth: IfTruthOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Instance masks (pseudo labels or predictions) vs ground truth: AP, AP25..AP75, ABO."""
        from liid_cli.evaluation.runs import evaluate_run_instances
        from liid_cli.evaluation.tables import per_class_table, record_table

        setup_logging(quiet)
        with skipped_without_truth(if_truth):
            path, record = evaluate_run_instances(
                run,
                source=source.value,
                predictions=predictions,
                gt=gt,
                index_path=data,
                name=name,
                iou_type=iou_type.value,
            )
            _print(record_table(record), per_class_table(record) if show_classes else None, path)

    @eval_app.command("semantic")
    @user_errors
    def semantic(
        run: RunOption = artifacts.DEFAULT_RUN,
        source: Annotated[
            SourceChoice,
            typer.Option(
                "--source",
                help="pseudo: export-coco's semantic pseudo labels; "
                "predictions: predict-semantic's maps.",
            ),
        ] = SourceChoice.pseudo,
        predictions: Annotated[
            Path | None,
            typer.Option(
                "--predictions",
                help="Any folder of palette PNGs <image name>.png to evaluate instead.",
            ),
        ] = None,
        gt: GtOption = None,
        data: DataOption = None,
        name: NameOption = None,
        if_truth: IfTruthOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Semantic label maps vs ground truth: mIoU and per-class IoU (truth 255 is ignored)."""
        from liid_cli.evaluation.runs import evaluate_run_semantic
        from liid_cli.evaluation.tables import per_class_table, record_table

        setup_logging(quiet)
        with skipped_without_truth(if_truth):
            path, record = evaluate_run_semantic(
                run, source=source.value, predictions=predictions, gt=gt, index_path=data, name=name
            )
            _print(record_table(record), per_class_table(record), path)

    @eval_app.command("labels")
    @user_errors
    def labels(
        run: RunOption = artifacts.DEFAULT_RUN,
        gt: GtOption = None,
        name: NameOption = None,
        if_truth: IfTruthOption = False,
        quiet: QuietOption = False,
    ) -> None:
        """Where pseudo labels go wrong: proposal kinds (object, part, superset, mixed, background)
        vs ground truth, and the share of each that CAM y~, MIL, the cut and the export call
        foreground."""
        from liid_cli.evaluation.runs import evaluate_run_labels
        from liid_cli.evaluation.tables import labels_table

        setup_logging(quiet)
        with skipped_without_truth(if_truth):
            path, record = evaluate_run_labels(run, gt=gt, name=name)
            _print(labels_table(record["metrics"]), None, path)

    @eval_app.command("box2mask")
    @user_errors
    def box2mask_methods(
        run: Annotated[
            Path, typer.Argument(help="Folder of box-to-mask runs, <run>/<method>/box2mask/.")
        ],
    ) -> None:
        """Line up box-to-mask methods on the target classes (mask mIoU over boxes, AP50, AP75);
        writes <run>/eval/<method>/metrics.json, which `liid viz --run RUN` reports."""
        from liid_cli.evaluation.runs import evaluate_box2mask_methods
        from liid_cli.evaluation.tables import box2mask_table

        records = evaluate_box2mask_methods(run)
        Console(soft_wrap=True).print(box2mask_table(records))

    @eval_app.command("compare")
    @user_errors
    def compare(
        runs: Annotated[
            list[Path], typer.Argument(help="Run folders whose `liid eval` results to line up.")
        ],
        if_truth: Annotated[
            bool,
            typer.Option(
                "--if-truth",
                help="Leave out runs with no evaluations (their data set has no ground truth); "
                "with none left, a note and exit 0.",
            ),
        ] = False,
        markdown: Annotated[
            Path | None,
            typer.Option(
                "--markdown",
                help="Also write the table as Markdown to this file (results docs are made so, "
                "never typed by hand).",
            ),
        ] = None,
        seeds: Annotated[
            bool,
            typer.Option(
                "--seeds",
                help="One row per run over its seeds (runs/x, runs/x-s1, runs/x-s2 are runs/x at "
                "seeds 0, 1, 2): each figure's median and its range.",
            ),
        ] = False,
    ) -> None:
        """Print the metrics of several runs side by side (the ablation table)."""
        from liid_cli.evaluation.runs import run_evaluations
        from liid_cli.evaluation.tables import compare_markdown, compare_table
        from liid_cli.fileio import atomic_path

        collected = []
        for run in runs:
            records = run_evaluations(run)
            if records:
                collected.append((run.name or str(run), records))
            elif not if_truth:
                raise LiidError(
                    f"{run}: no evaluations found; run `liid eval instances --run {run}` first"
                )
        if not collected:
            Console().print("skipped: no evaluations to compare (no ground truth)", highlight=False)
            return
        Console(soft_wrap=True).print(compare_table(collected, seeds))
        if markdown is not None:
            with atomic_path(markdown) as tmp:
                command = " ".join(["liid eval compare", *map(str, runs), "--markdown",
                                    str(markdown), *(["--seeds"] if seeds else [])])
                tmp.write_text(compare_markdown(collected, command, seeds))
            Console().print(f"wrote {markdown}", highlight=False, soft_wrap=True)


def _print(table: object, extra: object | None, path: Path) -> None:
    console = Console()
    console.print(table)
    if extra is not None:
        console.print(extra)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
