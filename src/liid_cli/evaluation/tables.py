"""Rich tables of evaluation records (percent, one decimal; `-` where a metric is undefined)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from liid_cli.evaluation.instances import METRIC_KEYS

COMPARE_KEYS = ("AP", "AP50", "AP75", "ABO", "mIoU")


def percent(value: Any) -> str:
    return "-" if value is None else f"{100.0 * float(value):.1f}"


def record_table(record: dict[str, Any]) -> Table:
    """The headline metrics of one record, one column each."""
    metrics = record["metrics"]
    keys = METRIC_KEYS if record["kind"] == "instances" else ("mIoU", "pixel_accuracy")
    table = Table(title=f"{record['name']} ({record['kind']}, %)")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_row(*(percent(metrics.get(key)) for key in keys))
    return table


def per_class_table(record: dict[str, Any]) -> Table:
    metrics = record["metrics"]
    table = Table(title=f"{record['name']} per class (%)")
    table.add_column("class")
    if record["kind"] == "instances":
        table.add_column("AP", justify="right")
        table.add_column("AP50", justify="right")
        for name, values in metrics["per_class"].items():
            table.add_row(name, percent(values["AP"]), percent(values["AP50"]))
    else:
        table.add_column("IoU", justify="right")
        for name, value in metrics["per_class"].items():
            table.add_row(name, percent(value))
    return table


def compare_rows(runs: Sequence[tuple[str, dict[str, dict[str, Any]]]]) -> list[list[str]]:
    """One row per (run, evaluation): [run, evaluation, AP, AP50, AP75, ABO, mIoU]."""
    rows = []
    for label, records in runs:
        for name, record in records.items():
            metrics = record.get("metrics", {})
            rows.append([label, name, *(percent(metrics.get(key)) for key in COMPARE_KEYS)])
    return rows


def compare_table(runs: Sequence[tuple[str, dict[str, dict[str, Any]]]]) -> Table:
    table = Table(title="runs side by side (%)")
    table.add_column("run")
    table.add_column("evaluation")
    for key in COMPARE_KEYS:
        table.add_column(key, justify="right")
    for row in compare_rows(runs):
        table.add_row(*row)
    return table
