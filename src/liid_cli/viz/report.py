"""`<run>/report.html`: one self-contained page (pictures embedded, no network) describing a run.

Sections: stage timings from every finished stage's manifest, `liid eval` metrics (with `liid eval
labels`' breakdown of where pseudo labels go wrong), per-class AP bars (inline SVG), the CAM heat
maps train-cam saved, and the overlay grids. Sections without data say so instead of disappearing.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Container
from pathlib import Path
from typing import Any

from liid_cli import artifacts, registry
from liid_cli.evaluation.instances import METRIC_KEYS
from liid_cli.evaluation.tables import BOX2MASK_HEADERS, box2mask_rows, labels_rows, percent
from liid_cli.runner import read_manifest

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1240px; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: 4px; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; } th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.empty { color: #888; font-style: italic; } img.grid { max-width: 100%; border: 1px solid #ddd; }
figure.cam { display: inline-block; margin: 0 8px 8px 0; font-size: 12px; text-align: center; }
figure.cam img { width: 160px; border: 1px solid #ddd; }
"""
BAR_COLOURS = ("#4878cf", "#e8833a", "#6acc65", "#d65f5f", "#956cb4", "#8c613c")
MAX_METRICS_SHOWN = 6
MAX_CAMS_SHOWN = 24
PROPOSAL_KEYS = ("recall@0.5", "recall@0.7", "ABO")  # of `liid eval proposals` records


def stage_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Finished stages of the run in pipeline order: name, seconds, finish time, device, metrics."""
    rows = []
    for stage in registry.names():
        manifest = read_manifest(artifacts.stage_dir(run_dir, stage))
        if manifest is None:
            continue
        timings = manifest.get("timings", {})
        scalars = {
            k: v
            for k, v in (manifest.get("metrics") or {}).items()
            if isinstance(v, (int, float, str))
        }
        rows.append(
            {
                "stage": stage,
                "seconds": timings.get("seconds"),
                "finished": datetime.datetime.fromtimestamp(timings["finished"]).strftime(
                    "%Y-%m-%d %H:%M"
                )
                if "finished" in timings
                else "",
                "device": manifest.get("device", ""),
                "metrics": dict(list(scalars.items())[:MAX_METRICS_SHOWN]),
            }
        )
    return rows


def _table(headers: list[str], rows: list[list[str]], text_columns: Container[int] = (0,)) -> str:
    """An HTML table; columns not in `text_columns` are right-aligned numbers."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(cell)}</td>"
            if i in text_columns
            else f"<td class='num'>{html.escape(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _format_metric(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def timings_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='empty'>No finished stage in this run yet.</p>"
    total = sum(r["seconds"] or 0.0 for r in rows)
    table_rows = [
        [
            r["stage"],
            f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
            r["finished"],
            r["device"],
            ", ".join(f"{k}={_format_metric(v)}" for k, v in r["metrics"].items()),
        ]
        for r in rows
    ]
    table_rows.append(["total", f"{total:.1f}", "", "", ""])
    headers = ["stage", "seconds", "finished", "device", "metrics"]
    return _table(headers, table_rows, text_columns=(0, 2, 3, 4))


NO_TRUTH = (
    "<p class='empty'>This data set has no ground-truth masks, so nothing is scored: the pictures "
    "under Overlays are the result.</p>"
)


def metrics_section(records: dict[str, dict[str, Any]], *, has_truth: bool = True) -> str:
    if not records and not has_truth:
        return NO_TRUTH
    if not records:
        return (
            "<p class='empty'>No evaluation yet: run <code>liid eval instances</code> / "
            "<code>liid eval semantic</code>.</p>"
        )
    parts = []
    instance_rows = [
        [name, *(percent(r["metrics"].get(k)) for k in METRIC_KEYS)]
        for name, r in records.items()
        if r["kind"] == "instances"
    ]
    if instance_rows:
        parts.append("<h3>Instances (%)</h3>" + _table(["evaluation", *METRIC_KEYS], instance_rows))
    for name, record in records.items():
        if record["kind"] == "semantic":
            per_class = record["metrics"]["per_class"]
            parts.append(
                f"<h3>Semantic: {html.escape(name)} (%)</h3>"
                + _table(
                    ["mIoU", *per_class],
                    [[percent(record["metrics"]["mIoU"]), *map(percent, per_class.values())]],
                    text_columns=(),
                )
            )
    box2mask_records = [r for r in records.values() if r["kind"] == "box2mask"]
    if box2mask_records:
        parts.append(
            "<h3>Box-to-mask on the target classes' boxes (%)</h3>"
            "<p class='sub'>mIoU: class mean of each ground-truth instance's best IoU.</p>"
            + _table(BOX2MASK_HEADERS, box2mask_rows(box2mask_records), text_columns=(0, 1))
        )
    proposal_rows = [
        [name, *(percent(r["metrics"].get(k)) for k in PROPOSAL_KEYS)]
        for name, r in records.items()
        if r["kind"] == "proposals"
    ]
    if proposal_rows:
        parts.append(
            "<h3>Proposals (%)</h3>" + _table(["evaluation", *PROPOSAL_KEYS], proposal_rows)
        )
    for name, record in records.items():
        if record["kind"] == "labels":
            headers, rows = labels_rows(record["metrics"])
            parts.append(
                f"<h3>Where pseudo labels go wrong: {html.escape(name)} (%)</h3>"
                "<p class='sub'>Proposal kinds against ground truth, and the share of each kind "
                "that a step labels foreground (only objects should be).</p>"
                + _table(headers, rows)
            )
    return "".join(parts)


def per_class_chart(records: dict[str, dict[str, Any]], metric: str = "AP50") -> str:
    """Horizontal grouped bars: one group per class, one bar per instance evaluation."""
    series = {
        name: r["metrics"]["per_class"] for name, r in records.items() if r["kind"] == "instances"
    }
    if not series:
        return "<p class='empty'>No instance evaluation to chart.</p>"
    classes = list(next(iter(series.values())))
    bar, label_width, plot_width = 14, 110, 520
    group = bar * len(series) + 10
    height = group * len(classes) + 30 + 18 * len(series)
    svg = [
        (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_width + plot_width + 60}' "
            f"height='{height}' font-family='sans-serif' font-size='12'>"
        )
    ]
    for tick in range(0, 101, 25):
        x = label_width + plot_width * tick / 100
        svg.append(
            f"<line x1='{x}' y1='0' x2='{x}' y2='{group * len(classes)}' stroke='#ddd'/>"
            f"<text x='{x}' y='{group * len(classes) + 14}' text-anchor='middle'>{tick}</text>"
        )
    for row, class_name in enumerate(classes):
        top = row * group
        svg.append(
            f"<text x='{label_width - 6}' y='{top + group / 2}' text-anchor='end' "
            "dominant-baseline='middle'>"
            f"{html.escape(class_name)}</text>"
        )
        for column, (name, per_class) in enumerate(series.items()):
            value = (per_class.get(class_name) or {}).get(metric)
            width = plot_width * (value or 0.0)
            y = top + column * bar + 5
            colour = BAR_COLOURS[column % len(BAR_COLOURS)]
            svg.append(
                f"<rect x='{label_width}' y='{y}' width='{width:.1f}' height='{bar - 2}' "
                f"fill='{colour}'>"
                f"<title>{html.escape(name)}: {percent(value)}</title></rect>"
                f"<text x='{label_width + width + 4:.1f}' y='{y + bar / 2}' "
                "dominant-baseline='middle'>"
                f"{percent(value)}</text>"
            )
    for column, name in enumerate(series):
        y = group * len(classes) + 30 + 18 * column
        svg.append(
            f"<rect x='{label_width}' y='{y - 10}' width='12' height='12' "
            f"fill='{BAR_COLOURS[column % len(BAR_COLOURS)]}'/>"
            f"<text x='{label_width + 18}' y='{y}'>{html.escape(name)} ({metric}, %)</text>"
        )
    svg.append("</svg>")
    return "".join(svg)


def cams_section(run_dir: Path) -> str:
    """The CAM heat maps (blue 0 -> red 1) of `liid train-cam --save-cams`, one per image and class."""
    cams_dir = artifacts.stage_dir(run_dir, "train-cam") / artifacts.CAM_MAPS_DIR
    paths = sorted(cams_dir.glob("*.png"))[:MAX_CAMS_SHOWN] if cams_dir.is_dir() else []
    if not paths:
        return (
            "<p class='empty'>No CAM heat maps: run <code>liid train-cam --save-cams</code> "
            "(on in the demo profile).</p>"
        )
    return "".join(
        f"<figure class='cam'><img alt='{html.escape(path.stem)}' src='{_embedded_png(path)}'>"
        f"<figcaption>{html.escape(path.stem)}</figcaption></figure>"
        for path in paths
    )


def _embedded_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_report(
    run_dir: Path,
    grids: list[tuple[str, Path]],
    records: dict[str, dict[str, Any]],
    *,
    has_truth: bool = True,
) -> str:
    """The HTML text of the report of `run_dir`; `grids` are (title, PNG path) pairs to embed;
    without ground truth (`has_truth` false) the metrics sections say so instead of asking for an
    evaluation."""
    pictures = (
        "".join(
            f"<h3>{html.escape(title)}</h3>"
            f"<img class='grid' alt='{html.escape(title)}' src='{_embedded_png(path)}'>"
            for title, path in grids
        )
        or "<p class='empty'>No pictures: no data set index found for this run (pass --data).</p>"
    )
    generated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>liid report: {html.escape(run_dir.name)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>liid report: {html.escape(run_dir.name)}</h1>"
        f"<p class='sub'>{html.escape(str(run_dir.resolve()))} &middot; generated {generated}</p>"
        f"<h2>Stage timings</h2>{timings_section(stage_rows(run_dir))}"
        f"<h2>Metrics</h2>{metrics_section(records, has_truth=has_truth)}"
        + (f"<h2>Per-class AP50</h2>{per_class_chart(records)}" if records or has_truth else "")
        + f"<h2>CAM heat maps</h2>{cams_section(run_dir)}"
        f"<h2>Overlays</h2>{pictures}"
        "</body></html>\n"
    )
