"""Atomic writes and content hashes; every artifact goes through here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    remove_path(tmp)
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    finally:
        remove_path(tmp)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, default=str) + "\n")


def read_json(path: Path) -> Any:
    from liid_cli.errors import LiidError

    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LiidError(f"{path}: file not found; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LiidError(f"{path}: not valid JSON ({error}); regenerate or fix the file") from None


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
