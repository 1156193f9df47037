"""How a migration's progress looks on a terminal (a Rich table, redrawn live while waiting)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from quorumkeep.operator.progress import (
    CANCELLED,
    CONCLUDED,
    NONE,
    OPEN,
    REPLACED,
    STEPS,
    MigrationProgress,
)


def _step_cell(progress: MigrationProgress, step: str) -> str:
    if progress.state == NONE:
        return "[dim]-[/dim]"
    if progress.step_reached(step):
        offset = progress.step_offset(step)
        when = "" if offset is None else f" {offset:.2f}s"
        return f"[green]✓[/green]{when}"
    if progress.state == CANCELLED:
        return "[red]✗[/red]"
    if progress.state == REPLACED:
        return "[dim]replaced[/dim]"
    return "[yellow]…[/yellow]"


def _outcome(progress: MigrationProgress) -> str:
    if progress.state == CONCLUDED:
        return "[green]concluded[/green]"
    if progress.state == CANCELLED:
        return f"[red]cancelled[/red] ({progress.cancel_reason})"
    if progress.state == REPLACED:
        return "replaced by a later migration"
    if progress.state == OPEN:
        if progress.node_error:
            return f"[yellow]open[/yellow]; new node: {progress.node_error}"
        role = progress.node_role or "?"
        return f"[yellow]open[/yellow]; new node: {role}"
    return "no migration open"


def progress_table(progresses: Iterable[MigrationProgress], title: str = "migrations") -> Table:
    table = Table(title=title)
    table.add_column("account")
    table.add_column("block", justify="right")
    for step in STEPS:
        table.add_column(step)
    table.add_column("outcome")
    for progress in progresses:
        table.add_row(
            progress.account,
            "-" if progress.started_height is None else str(progress.started_height),
            *(_step_cell(progress, step) for step in STEPS),
            _outcome(progress),
        )
    return table
