"""The Rich console every command prints with, and how it prints tables.

On a terminal Rich fits its output to the window. Anywhere else (a pipe, a file, a CI log)
it assumes 80 columns and would wrap or cut table cells — an error reason cut in half is no
use in a log — so :func:`print_table` gives a table its natural width there (rules and
spinners keep the console's width).
"""

from __future__ import annotations

from typing import IO

from rich.console import Console, RenderableType


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    return Console(file=file, stderr=stderr)


def print_table(out: Console, table: RenderableType) -> None:
    """Print ``table``; off a terminal, as wide as its widest row needs (never wrapped)."""
    if out.is_terminal:
        out.print(table)
        return
    natural = out.measure(table, options=out.options.update_width(10_000)).maximum
    width = out.width
    out.width = max(width, natural)  # print() caps its width at the console's
    try:
        out.print(table)
    finally:
        out.width = width
