"""User-facing errors: one line that names the file and the fix, no traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")


class LiidError(Exception):
    """A problem with the user's input or artifacts; the message says what to do about it."""


class MissingTruth(LiidError):
    """The data set has no ground truth to evaluate against."""


def print_error(message: str) -> None:
    """One red `error:` line, never wrapped, never read as markup."""
    from rich.text import Text

    from liid_cli.log import console

    console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True, highlight=False)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a LiidError (or a file the user may not access) raised by a command into a one-line
    message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LiidError as error:
            print_error(str(error))
            raise typer.Exit(1) from None
        except PermissionError as error:
            where = error.filename or "a file or folder"
            print_error(f"{where}: permission denied; give yourself access to it (chmod u+rw) "
                        "or choose another path")
            raise typer.Exit(1) from None

    return wrapper
