"""The Rich console every command prints tables and progress with.

On a terminal Rich fits its output to the window. Anywhere else (a pipe, a file, a CI log)
it would assume 80 columns and wrap or cut table cells — an error reason cut in half is no
use in a log — so output that is not a terminal gets a console wide enough for any table.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console

NOT_A_TERMINAL_WIDTH = 10_000


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    is_terminal = hasattr(stream, "isatty") and stream.isatty()
    return Console(file=file, stderr=stderr, width=None if is_terminal else NOT_A_TERMINAL_WIDTH)
