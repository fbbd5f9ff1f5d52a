"""Rich tables of evaluation records (percent, one decimal; `-` where a metric is undefined)."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from liid_cli.evaluation.instances import METRIC_KEYS
from liid_cli.evaluation.labels import KINDS

COMPARE_KEYS = (
    "AP", "AP50", "AP75", "ABO", "mIoU", "whole objects", "whole objects at most", "proposal AR",
)
SEED_SUFFIX = re.compile(r"-s\d+$")  # `make ... SEED=N RUN=runs/x-sN`


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


STEP_TITLES = {"cam": "CAM y~ fg", "mil": "MIL fg", "cut": "cut fg"}


def labels_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of `liid eval labels`: per proposal kind its share of the proposals, the
    share each step labels foreground and its share of the pseudo instances; then objects given
    the right class."""
    steps = list(metrics["foreground"])
    exported = "exported_kinds" in metrics
    headers = ["kind", "of proposals", *(STEP_TITLES[step] for step in steps)]
    headers += ["of pseudo instances"] if exported else []
    rows = []
    for kind in KINDS:
        row = [kind, percent(metrics["proposal_kinds"][kind])]
        row += [percent(metrics["foreground"][step][kind]) for step in steps]
        rows.append(row + ([percent(metrics["exported_kinds"][kind])] if exported else []))
    right = ["object, right class", ""]
    right += [percent(metrics["objects_right_class"][step]) for step in steps]
    rows.append(right + ([percent(metrics["exported_right_class"])] if exported else []))
    return headers, rows


def labels_table(metrics: dict[str, Any]) -> Table:
    headers, rows = labels_rows(metrics)
    instances = metrics.get("exported_instances")
    ceiling = metrics.get("exported_objects_ceiling")
    table = Table(
        title=f"where pseudo labels go wrong ({metrics['proposals']} proposals"
        + (f", {instances} pseudo instances" if instances is not None else "")
        + ", %)",
        caption=None if ceiling is None else
        f"whole objects among the pseudo instances: at most {percent(ceiling)}% from these "
        "proposals at this count (object proposals / pseudo instances)",
    )
    for column, header in enumerate(headers):
        table.add_column(header, justify="left" if column == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _headline(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's metrics with the compare table's derived keys; None if it has none of them."""
    metrics = dict(record.get("metrics", {}))
    exported = metrics.get("exported_kinds")
    if exported is not None:
        metrics["whole objects"] = exported.get("object")
        metrics["whole objects at most"] = metrics.get("exported_objects_ceiling")
    if record.get("kind") == "proposals":
        metrics["proposal AR"] = metrics.get("AR")
    return metrics if any(key in metrics for key in COMPARE_KEYS) else None


def _photos(metrics: dict[str, Any]) -> str:
    return "-" if metrics.get("num_images") is None else str(metrics["num_images"])


def _spread(values: list[Any]) -> str:
    """One value in %, or the median of several with their range: `6.3 (5.3-7.2)`."""
    present = sorted(float(v) for v in values if v is not None)
    if len(present) < 2:
        return percent(present[0] if present else None)
    return f"{percent(statistics.median(present))} ({percent(present[0])}-{percent(present[-1])})"


def seed_group(label: str) -> str:
    """A run's name without its seed suffix: runs/x-s1 and runs/x-s2 are runs/x at seeds 1, 2."""
    return SEED_SUFFIX.sub("", label)


def _seed_rows(runs: Sequence[tuple[str, dict[str, dict[str, Any]]]]) -> list[list[str]]:
    groups: dict[str, list[dict[str, dict[str, Any]]]] = {}
    for label, records in runs:
        groups.setdefault(seed_group(label), []).append(records)
    rows = []
    for group, members in groups.items():
        for name in dict.fromkeys(name for records in members for name in records):
            found = [m for records in members if name in records
                     if (m := _headline(records[name])) is not None]
            if found:
                rows.append([group, name, str(len(found)), _photos(found[0]),
                             *(_spread([m.get(key) for m in found]) for key in COMPARE_KEYS)])
    return rows


def compare_rows(
    runs: Sequence[tuple[str, dict[str, dict[str, Any]]]], seeds: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per (run, evaluation): run, evaluation and those of photos, AP, AP50,
    AP75, ABO, mIoU, whole objects and proposal AR that some row has; photos is the number of
    images evaluated, `liid eval labels` gives the share of whole objects among the exported
    instances, `liid eval proposals` the mask AR (and ABO) of every kept proposal. With `seeds`,
    one row per group of runs that differ only in their seed suffix (`-sN`): the number of seeds,
    and each figure's median with its range over them."""
    if seeds:
        headers = ["run", "evaluation", "seeds", "photos", *COMPARE_KEYS]
        rows = _seed_rows(runs)
    else:
        headers = ["run", "evaluation", "photos", *COMPARE_KEYS]
        rows = [
            [label, name, _photos(metrics), *(percent(metrics.get(key)) for key in COMPARE_KEYS)]
            for label, records in runs
            for name, record in records.items()
            if (metrics := _headline(record)) is not None
        ]
    fixed = headers.index("photos")
    shown = list(range(fixed)) + [
        column for column in range(fixed, len(headers)) if any(row[column] != "-" for row in rows)
    ]
    return [headers[c] for c in shown], [[row[c] for c in shown] for row in rows]


def compare_markdown(
    runs: Sequence[tuple[str, dict[str, dict[str, Any]]]], source: str, seeds: bool = False
) -> str:
    """The side-by-side table as Markdown, in %, under a comment naming `source`, the command
    that wrote it (what `liid eval compare --markdown` writes)."""
    headers, rows = compare_rows(runs, seeds)
    lines = [f"<!-- written by `{source}`; figures in % -->", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compare_table(
    runs: Sequence[tuple[str, dict[str, dict[str, Any]]]], seeds: bool = False
) -> Table:
    """The side-by-side table for the terminal: only the columns some evaluation has."""
    headers, rows = compare_rows(runs, seeds)
    title = "runs side by side (%" + ("; median (min-max) over seeds)" if seeds else ")")
    table = Table(title=title)
    for column, header in enumerate(headers):
        if column < 2:
            table.add_column(header, no_wrap=True)
        else:  # a narrow terminal wraps a header between its words, never inside one
            widest = max((len(row[column]) for row in rows), default=0)
            table.add_column(header.replace(" ", "\n"), justify="right",
                             min_width=max(5, widest, *map(len, header.split())))
    for row in rows:
        table.add_row(*row)
    return table


BOX2MASK_KEYS = ("mIoU", "AP50", "AP75", "AP", "ABO")


def box2mask_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    """[method, weakly supervised, rounds, mIoU, AP50, AP75, AP, ABO] per box-to-mask record."""
    return [
        [
            record["name"],
            "yes" if record["metrics"]["weakly_supervised"] else "no",
            str(record["metrics"]["rounds"]),
            *(percent(record["metrics"].get(key)) for key in BOX2MASK_KEYS),
        ]
        for record in records
    ]


BOX2MASK_HEADERS = ["method", "weakly supervised", "rounds", *BOX2MASK_KEYS]


def box2mask_table(records: Sequence[dict[str, Any]]) -> Table:
    title = "box-to-mask on the target classes' boxes (%; mIoU: class mean of best IoU)"
    table = Table(title=title)
    for column, header in enumerate(BOX2MASK_HEADERS):
        table.add_column(header, justify="left" if column < 2 else "right")
    for row in box2mask_rows(records):
        table.add_row(*row)
    return table
