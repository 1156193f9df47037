"""`quorumkeep contract …`: call and view the MPC contract through a ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from quorumkeep.cli.keys import (
    JSON_OUTPUT,
    PASSPHRASE_FILE,
    emit_json,
    fail,
    fail_ledger,
    report_outcome,
    signer_or_fail,
)
from quorumkeep.ledger.canonical import NotCanonical, check_ijson, parse_json
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.transaction import FunctionCall

app = typer.Typer(no_args_is_help=True, help="Call and view the MPC contract.")

LEDGER_URL = typer.Option(..., "--ledger", help="Ledger URL, e.g. http://127.0.0.1:7700.")


def _args(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = parse_json(text)
        check_ijson(value, where="--args")
    except (ValueError, NotCanonical) as exc:
        fail(f"--args is not valid JSON: {str(exc).splitlines()[0]}")
    if not isinstance(value, dict):
        fail("--args must be a JSON object")
    return value


@app.command("call")
def call(
    method: str = typer.Argument(..., help="Contract method, e.g. register_backup_service."),
    args: str | None = typer.Option(None, "--args", help="Arguments as a JSON object."),
    signer: str = typer.Option(..., "--signer", help="Account that signs."),
    key: Path = typer.Option(
        ..., "--key", help="Key file of one of its access keys.", dir_okay=False
    ),
    ledger: str = LEDGER_URL,
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Sign and submit a contract call; waits until its block is durable."""
    call_args = _args(args)
    account_signer = signer_or_fail(key, signer, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = client.submit(account_signer, [FunctionCall(method, call_args)])
    except LedgerError as exc:
        fail_ledger(exc)
    report_outcome(outcome, as_json)


@app.command("view")
def view(
    method: str = typer.Argument(..., help="View, e.g. state, migration_info, public_key."),
    args: str | None = typer.Option(None, "--args", help="Arguments as a JSON object."),
    ledger: str = LEDGER_URL,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Read the contract (last committed state)."""
    view_args = _args(args)
    try:
        with LedgerClient(ledger) as client:
            value = client.view(method, view_args)
    except LedgerError as exc:
        fail_ledger(exc)
    if as_json:
        typer.echo(json.dumps(value, sort_keys=True))
    else:
        emit_json(value)
