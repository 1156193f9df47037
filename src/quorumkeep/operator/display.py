"""How operator reports look on a terminal: a migration's progress (a Rich table, redrawn
live while waiting) and backup freshness."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table

from quorumkeep.operator.backup_status import BackupFreshness
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


def backup_freshness_tables(found: BackupFreshness) -> tuple[Table, Table]:
    """Two tables: every operator's latest backup confirmation beside the epoch in force,
    and every domain's backup gate."""
    operators = Table(title=f"backup confirmations (epoch in force: {found.epoch})")
    for column in (
        "operator",
        "id",
        "backup service",
        "confirmed epoch",
        "current",
        "block",
        "age",
    ):
        operators.add_column(column)
    for o in found.operators:
        operators.add_row(
            o.account,
            str(o.participant_id),
            "registered" if o.backup_service else "[red]none[/red]",
            "-" if o.confirmed_epoch is None else str(o.confirmed_epoch),
            "[green]yes[/green]" if o.current else "[red]no[/red]",
            "-" if o.block_height is None else str(o.block_height),
            "-" if o.age_seconds is None else f"{o.age_seconds:.0f}s",
        )
    domains = Table(title="backup gate (sign refused with KeyNotBackedUp until open)")
    for column in ("domain", "policy", "confirmed", "missing", "signing", "wait for backups"):
        domains.add_column(column)
    for d in found.domains:
        domains.add_row(
            str(d["domain_id"]),
            str(d["policy"]),
            f"{len(d['confirmed'])} of {d['required']}",
            ", ".join(d["missing"]) or "-",
            "[green]open[/green]" if d["signing_allowed"] else "[red]closed[/red]",
            gate_wait_text(d.get("wait"), d.get("wait_seconds")),
        )
    return operators, domains


def gate_wait_text(wait: dict[str, Any] | None, seconds: float | None) -> str:
    """A domain's latest wait for backups in words: how long, between which blocks."""
    if wait is None or seconds is None:
        return "-"
    if wait["opened_height"] is None:
        return f"waiting {seconds:.1f}s (since block {wait['since_height']}, epoch {wait['epoch']})"
    return (
        f"{seconds:.1f}s (blocks {wait['since_height']}→{wait['opened_height']}, "
        f"epoch {wait['epoch']})"
    )
