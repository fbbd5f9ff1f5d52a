"""Test helpers: run the CLI in-process and check the one-line-error contract."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from liid_cli.cli import app


def liid(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit != 0, no traceback, and one `error:` line naming each fragment."""
    output = result.output
    assert result.exit_code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for fragment in fragments:
        assert fragment in output, (fragment, output)


def tagged_folder(index_path: Path, out: Path) -> tuple[Path, Path]:
    """A data set index as a user's photos: a folder of its images and a `labels.csv` of tags."""
    import csv
    import shutil

    from liid_cli.data.index import load_index

    index = load_index(index_path)
    photos = out / "photos"
    photos.mkdir(parents=True)
    rows = []
    for image in index.images:
        source = index.image_path(image)
        shutil.copy(source, photos / source.name)
        tags = [index.classes.names[index.classes.to_internal(c) - 1] for c in image["labels"]]
        rows.append([source.name, ";".join(tags)])
    labels = out / "labels.csv"
    with labels.open("w", newline="") as handle:
        csv.writer(handle).writerows([["image", "labels"], *rows])
    return photos, labels
