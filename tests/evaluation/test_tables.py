"""`liid eval compare --seeds`: runs that differ only in their seed suffix become one row of
medians and ranges."""

from __future__ import annotations

from typing import Any

from liid_cli.evaluation.tables import compare_markdown, compare_rows, seed_group


def _records(ap50: float, whole: float | None = None) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {
        "pseudo_labels": {"kind": "instances", "metrics": {"AP50": ap50, "num_images": 144}},
    }
    if whole is not None:
        records["labels"] = {"kind": "labels", "metrics": {"exported_kinds": {"object": whole}}}
    return records


def test_seed_suffix_names_the_same_run() -> None:
    assert seed_group("halfA-s2") == seed_group("halfA") == "halfA"
    assert seed_group("halfA-s1x") == "halfA-s1x" and seed_group("sweep-s10") == "sweep"


def test_seeds_give_the_median_and_range_of_each_figure() -> None:
    runs = [
        ("halfA", _records(0.05, 0.057)),
        ("halfA-s1", _records(0.07)),
        ("halfA-s2", _records(0.06, 0.061)),
        ("halfB", _records(0.072)),
    ]
    headers, rows = compare_rows(runs, seeds=True)
    assert headers == ["run", "evaluation", "seeds", "photos", "AP50", "whole objects"]
    assert rows == [
        ["halfA", "pseudo_labels", "3", "144", "6.0 (5.0-7.0)", "-"],
        ["halfA", "labels", "2", "-", "-", "5.9 (5.7-6.1)"],
        ["halfB", "pseudo_labels", "1", "144", "7.2", "-"],
    ]
    per_run = compare_rows(runs)[1]
    assert len(per_run) == 6 and per_run[0] == ["halfA", "pseudo_labels", "144", "5.0", "-"]
    assert "| halfA | pseudo_labels | 3 | 144 | 6.0 (5.0-7.0) | - |" in compare_markdown(
        runs, "liid eval compare ... --seeds", seeds=True
    )
