"""Atomic writes and content hashes; every artifact goes through here.

An atomic write goes to `.<name>.tmp-<pid>` beside its target (and a replaced folder briefly to
`.<name>.old-<pid>`); a process killed mid-write leaves that sibling behind, and the next write of
the same target removes the siblings whose process is gone (never a live process's).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Why a write found no room, by errno (ENOSPC, EFBIG: a file size limit, EDQUOT).
NO_ROOM = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file size limit",
    errno.EDQUOT: "disk quota exceeded",
}


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds. A write
    in the block that finds no room is a LiidError naming `final`; the previous `final` stays."""
    from liid_cli.errors import LiidError

    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
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
    except OSError as error:
        if error.errno not in NO_ROOM:
            raise
        raise LiidError(
            f"{_as_published(final)}: {NO_ROOM[error.errno]}; free space or choose another --run"
        ) from None
    finally:
        remove_path(tmp)


def _as_published(path: Path) -> Path:
    """`path` with each enclosing `.<name>.tmp-<pid>` folder named as it would have been published
    (a stage writes its files inside its own temporary folder)."""
    return Path(*(re.sub(r"^\.(.+)\.tmp-\d+$", r"\1", part) for part in path.parts))


def remove_stale_siblings(final: Path) -> list[Path]:
    """Remove the `.<name>.tmp-<pid>` / `.<name>.old-<pid>` siblings of `final` whose process is
    gone; return what was removed."""
    prefix = f".{final.name}."
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for sibling in final.parent.iterdir():
        if not sibling.name.startswith(prefix):
            continue
        kind, _, pid = sibling.name[len(prefix):].partition("-")
        if kind in ("tmp", "old") and pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another process may be removing it too
                remove_path(sibling)
            removed.append(sibling)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        pass
    return True


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    """Write JSON atomically; NaN and infinity, which JSON cannot hold, are refused."""
    from liid_cli.errors import LiidError

    try:
        text = json.dumps(data, indent=indent, default=str, allow_nan=False)
    except ValueError as error:
        raise LiidError(f"{path}: not written, a value is NaN or infinite ({error}); rerun the "
                        "stage that made its inputs with --force") from None
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def finite_or_none(data: Any) -> Any:
    """`data` with every NaN or infinite float (in nested dicts, lists and tuples) as None: a
    figure that could not be measured, as JSON can hold it."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def read_json(
    path: Path, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> Any:
    """Parse a JSON file (a UTF-8 byte-order mark is allowed); `object_pairs_hook` as in
    json.loads."""
    from liid_cli.errors import LiidError

    try:
        return json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=object_pairs_hook)
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
