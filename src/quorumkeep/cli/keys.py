"""`quorumkeep keys …`: sealed Ed25519 key files and an account's access keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import nacl.signing
import typer

from quorumkeep.ledger.client import LedgerClient, TxOutcome
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.keyfile import (
    KeyFileError,
    load_signer,
    read_key_file,
    read_passphrase,
    seal_key,
    write_key_file,
)
from quorumkeep.ledger.transaction import FULL_ACCESS, Permission, decode_public_key

app = typer.Typer(no_args_is_help=True, help="Key files and access keys.")

EXIT_REJECTED = 1
EXIT_USAGE = 2

PASSPHRASE_FILE = typer.Option(
    None,
    "--passphrase-file",
    help="File holding the key files' passphrase (default: env QUORUMKEEP_PASSPHRASE).",
    dir_okay=False,
)
JSON_OUTPUT = typer.Option(False, "--json", help="Machine-readable output.")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One readable line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def fail_ledger(exc: LedgerError) -> NoReturn:
    fail(f"{exc.code}: {exc.message}", EXIT_REJECTED)


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def outcome_json(outcome: TxOutcome) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tx_hash": outcome.tx_hash,
        "block_height": outcome.block_height,
        "status": outcome.status,
        "value": outcome.value,
        "events": outcome.events,
    }
    if not outcome.ok:
        body["error"] = {"code": outcome.error_code, "message": outcome.error_message}
    return body


def report_outcome(outcome: TxOutcome, as_json: bool) -> None:
    """Print a transaction's outcome; a contract failure exits 1 (after printing JSON)."""
    if as_json:
        emit_json(outcome_json(outcome))
    if not outcome.ok:
        fail(
            f"{outcome.error_code}: {outcome.error_message} "
            f"(tx {outcome.tx_hash[:16]}…, block {outcome.block_height})",
            EXIT_REJECTED,
        )
    if as_json:
        return
    typer.echo(f"ok: block {outcome.block_height}, tx {outcome.tx_hash}")
    if outcome.value is not None:
        typer.echo(json.dumps(outcome.value, indent=2, sort_keys=True))
    for event in outcome.events:
        typer.echo(f"event {event.get('kind')}: {json.dumps(event.get('data'), sort_keys=True)}")


def passphrase_or_fail(passphrase_file: Path | None) -> bytes:
    try:
        return read_passphrase(passphrase_file)
    except KeyFileError as exc:
        fail(str(exc))


def signer_or_fail(key: Path, signer: str | None, passphrase_file: Path | None) -> Any:
    passphrase = passphrase_or_fail(passphrase_file)
    try:
        return load_signer(key, passphrase, signer)
    except KeyFileError as exc:
        fail(str(exc))


def _permission(methods: str | None) -> Permission:
    if methods is None:
        return FULL_ACCESS
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        fail("--methods needs at least one method name")
    try:
        return Permission.from_json({"function_call": names})
    except LedgerError as exc:
        fail(exc.message)


def _public_key(value: str) -> bytes:
    """A public key given as hex, or read from a key file."""
    if os.path.exists(value):
        try:
            return read_key_file(Path(value)).public_key
        except KeyFileError as exc:
            fail(str(exc))
    try:
        return decode_public_key(value.lower())
    except LedgerError as exc:
        fail(f"{value!r} is neither a key file nor a public key: {exc.message}")


@app.command("new")
def new(
    out: Path = typer.Option(
        ..., "--out", help="Key file to create (never overwritten).", dir_okay=False
    ),
    account: str | None = typer.Option(None, "--account", help="Account the key belongs to."),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Create a new Ed25519 key, sealed under the passphrase, in a 0600 file."""
    passphrase = passphrase_or_fail(passphrase_file)
    signing_key = nacl.signing.SigningKey(os.urandom(32))
    try:
        key_file = seal_key(signing_key, passphrase, account=account)
        write_key_file(out, key_file)
    except KeyFileError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"path": str(out), "account": account, "public_key": key_file.public_key.hex()})
    else:
        typer.echo(key_file.public_key.hex())


@app.command("show")
def show(
    key: Path = typer.Argument(..., help="Key file.", dir_okay=False),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Print a key file's account and public key (needs no passphrase)."""
    try:
        key_file = read_key_file(key)
    except KeyFileError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"account": key_file.account, "public_key": key_file.public_key.hex()})
    else:
        typer.echo(f"account: {key_file.account or '-'}\npublic_key: {key_file.public_key.hex()}")


@app.command("add")
def add(
    public_key: str = typer.Argument(..., help="Public key (hex) or a key file holding it."),
    methods: str | None = typer.Option(
        None,
        "--methods",
        help="Comma-separated node methods (function-call key); omit for a full-access key.",
    ),
    signer: str = typer.Option(..., "--signer", help="Account to add the key to."),
    key: Path = typer.Option(
        ..., "--key", help="A full-access key file of that account.", dir_okay=False
    ),
    ledger: str = typer.Option(..., "--ledger", help="Ledger URL."),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Add an access key to an account (e.g. a node's function-call signer key)."""
    new_key = _public_key(public_key)
    permission = _permission(methods)
    account_signer = signer_or_fail(key, signer, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = client.add_key(account_signer, new_key, permission)
    except LedgerError as exc:
        fail_ledger(exc)
    report_outcome(outcome, as_json)


@app.command("delete")
def delete(
    public_key: str = typer.Argument(..., help="Public key (hex) or a key file holding it."),
    signer: str = typer.Option(..., "--signer", help="Account to remove the key from."),
    key: Path = typer.Option(
        ..., "--key", help="A full-access key file of that account.", dir_okay=False
    ),
    ledger: str = typer.Option(..., "--ledger", help="Ledger URL."),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Remove an access key from an account."""
    old_key = _public_key(public_key)
    account_signer = signer_or_fail(key, signer, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = client.delete_key(account_signer, old_key)
    except LedgerError as exc:
        fail_ledger(exc)
    report_outcome(outcome, as_json)
