"""`quorumkeep operator …`: what an operator does for its node with its full-access key."""

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
from quorumkeep.contract import NODE_METHODS, ContractError
from quorumkeep.contract.state import ParticipantInfo
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.transaction import Permission

app = typer.Typer(no_args_is_help=True, help="Operator actions for a node.")


def node_permission() -> Permission:
    """A function-call key limited to the contract's node methods."""
    return Permission(tuple(sorted(NODE_METHODS)))


def read_node_info(value: str) -> ParticipantInfo:
    """The participant info `node init` printed, from a file or given inline as JSON."""
    path = Path(value)
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            fail(f"--node-info: cannot read {value}: {exc.strerror}")
        except UnicodeDecodeError:
            fail(f"--node-info: {value} is not a UTF-8 text file")
    try:
        document = json.loads(text)
    except ValueError:
        fail("--node-info is neither a readable file nor a JSON object")
    try:
        return ParticipantInfo.from_json(document, "node info", id_required=False)
    except ContractError as exc:
        fail(f"--node-info: {exc}")


def _existing_permission(client: LedgerClient, account: str, public_key: bytes) -> Any:
    body = client.account(account)
    for key in body.get("keys", []):
        if key.get("public_key") == public_key.hex():
            return key.get("permission")
    return None


@app.command("add-node-key")
def add_node_key(
    account: str = typer.Option(..., "--account", help="The operator's account."),
    key: Path = typer.Option(
        ..., "--key", help="A full-access key file of that account.", dir_okay=False
    ),
    node_info: str = typer.Option(
        ..., "--node-info", help="The JSON `node init` printed: a file, or the JSON itself."
    ),
    ledger: str = typer.Option(..., "--ledger", help="Ledger URL."),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Give the node's signer key a function-call access key (node methods only)."""
    info = read_node_info(node_info)
    if info.account != account:
        fail(f"the node info is for account {info.account!r}, not {account!r}")
    permission = node_permission()
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            existing = _existing_permission(client, account, info.signer_public_key)
            if existing is not None:
                if existing != permission.to_json():
                    fail(
                        f"{info.signer_public_key.hex()} is already a key of {account} with "
                        f"another permission ({json.dumps(existing)}); delete it first"
                    )
                if as_json:
                    emit_json({"status": "exists", "public_key": info.signer_public_key.hex()})
                else:
                    typer.echo(f"ok: {info.signer_public_key.hex()} already is a node key")
                return
            outcome = client.add_key(signer, info.signer_public_key, permission)
    except LedgerError as exc:
        fail_ledger(exc)
    report_outcome(outcome, as_json)
