"""What every command shares: the consoles, the exit codes, and turning bad input into exit 2.

Only click and rich here, and rich's heavy parts only when a command prints: ``bnderive --help``
must not pay for SymPy or NumPy.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_REFUTED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 4

#: How each verdict status is shown, keyed by ``Status.value``.
STATUS_STYLE = {
    "holds": ("✓ holds", "green"),
    "refuted": ("✗ refuted", "bold red"),
    "undecided": ("? undecided", "yellow"),
    "not checked": ("· not checked", "dim"),
}


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "120"))
    # soft_wrap: long lines (counterexamples, formulas) stay whole, so they can be copied.
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=True)


def document() -> Any:
    """The LaTeX document reader, imported when used: building its grammar costs start-up time
    every other command would pay."""
    from bnderive.read import documents

    return documents


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input is one paragraph on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BnderiveError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper
