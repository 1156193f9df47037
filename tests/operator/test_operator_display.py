"""Tables printed where the output is not a terminal are neither wrapped nor cut."""

from __future__ import annotations

import io

from quorumkeep.cli.console import console, print_table
from quorumkeep.operator.display import progress_table
from quorumkeep.operator.progress import CANCELLED, MigrationProgress


def test_a_long_cancel_reason_stays_whole_on_one_line() -> None:
    reason = "resharing started: " + "a very long reason that names everything " * 5 + "END"
    progress = MigrationProgress(
        "op2", state=CANCELLED, started_height=12, cancelled_height=15, cancel_reason=reason
    )
    out = io.StringIO()
    print_table(console(file=out), progress_table([progress], "migration"))
    text = out.getvalue()
    assert reason in text, text
    assert len([line for line in text.splitlines() if "op2" in line]) == 1
