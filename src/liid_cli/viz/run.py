"""`liid viz` as a plain function: the run's grids into `<run>/viz/`, then `<run>/report.html`
(with the evaluations of the run and of its validation models under `<run>/val/`)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from liid_cli import artifacts
from liid_cli.config import Count, Probability, StageConfig
from liid_cli.evaluation.runs import run_evaluations
from liid_cli.fileio import atomic_path
from liid_cli.log import log
from liid_cli.viz.pictures import DrawSettings, draw_panel, find_panels
from liid_cli.viz.report import build_report


class VizConfig(StageConfig):
    max_images: Count
    cell: int = Field(ge=16)
    alpha: Probability
    min_score: Probability
    max_instances: Count


def run_viz(run_dir: Path, data: Path | None, config: VizConfig, seed: int) -> Path:
    """Redraw every grid the run allows and the report; returns the report's path."""
    settings = DrawSettings(
        max_images=config.max_images,
        cell=config.cell,
        alpha=config.alpha,
        min_score=config.min_score,
        max_instances=config.max_instances,
        seed=seed,
    )
    panels = find_panels(run_dir, data)
    viz_dir = run_dir / artifacts.VIZ_DIR
    grids: list[tuple[str, Path]] = []
    with atomic_path(viz_dir) as tmp:
        tmp.mkdir(parents=True)
        for panel in panels:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", panel.title.replace(" / ", "_")) + ".png"
            draw_panel(panel, settings).save(tmp / name)
            grids.append((panel.title, viz_dir / name))
    records = run_evaluations(run_dir)
    for model, folder in artifacts.val_runs(run_dir).items():
        records.update({f"val {model}: {name}": r for name, r in run_evaluations(folder).items()})
    has_truth = not panels or any(
        panel.index.ground_truth_path is not None and panel.index.ground_truth_path.is_file()
        for panel in panels
    )
    report = run_dir / artifacts.REPORT_HTML
    with atomic_path(report) as tmp:
        tmp.write_text(build_report(run_dir, grids, records, has_truth=has_truth))
    log.info(f"viz: {len(grids)} grid(s) in {viz_dir}, report {report}")
    return report
