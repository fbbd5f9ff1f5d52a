"""A stage folder's outputs as its manifest records them, and whether the folder still holds them.

The manifest records each output file's size, modification time and sha256, and carries a
checksum of its own content. Before a stage is skipped, `why_changed` compares each file's size
and mtime with the record and re-hashes only a file whose mtime differs, so checking large outputs
stays cheap; an edited manifest fails its checksum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liid_cli import artifacts
from liid_cli.fileio import file_sha256, finite_or_none, text_sha256

CHECKSUM = "checksum"


def describe_outputs(folder: Path) -> dict[str, dict[str, Any]]:
    """Relative path -> bytes, mtime_ns and sha256 of every file under `folder`."""
    outputs = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        outputs[str(path.relative_to(folder))] = {
            "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path),
        }
    return outputs


def manifest_text(manifest: dict[str, Any]) -> str:
    """`manifest` as written to manifest.json, its checksum added (also to `manifest` itself)."""
    finite = finite_or_none(manifest)
    content = json.loads(json.dumps(finite, default=str, allow_nan=False))  # what a reader loads
    content.pop(CHECKSUM, None)
    manifest[CHECKSUM] = finite[CHECKSUM] = _checksum(content)
    return json.dumps(finite, indent=1, default=str, allow_nan=False) + "\n"


def _checksum(content: dict[str, Any]) -> str:
    return text_sha256(json.dumps(content, sort_keys=True))


def why_changed(folder: Path, manifest: dict[str, Any]) -> str | None:
    """Why `folder` no longer matches its manifest, or None when every output is as recorded."""
    content = {key: value for key, value in manifest.items() if key != CHECKSUM}
    if manifest.get(CHECKSUM) != _checksum(content):
        return f"{folder / artifacts.MANIFEST} does not match its checksum (edited by hand?)"
    for name, recorded in content.get("outputs", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        stat = path.stat()
        if stat.st_size != recorded["bytes"]:
            return f"{path} has {stat.st_size} bytes, the manifest recorded {recorded['bytes']}"
        if stat.st_mtime_ns != recorded["mtime_ns"] and file_sha256(path) != recorded["sha256"]:
            return f"{path} was modified after the stage wrote it (its sha256 differs from the manifest)"
    return None
