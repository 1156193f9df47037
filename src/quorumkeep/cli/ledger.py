"""`quorumkeep ledger …`: create and run the ledger that hosts the MPC contract."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from quorumkeep.cli.keys import JSON_OUTPUT, PASSPHRASE_FILE, emit_json, fail, passphrase_or_fail
from quorumkeep.ledger.chain import DEFAULT_TX_VALIDITY_BLOCKS
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerCorrupted, LedgerError
from quorumkeep.ledger.genesis import init_ledger
from quorumkeep.ledger.node import DEFAULT_IDLE_BLOCK_MS
from quorumkeep.ledger.storage import StorageError
from quorumkeep.net.server import parse_host_port

app = typer.Typer(no_args_is_help=True, help="Run the ledger that hosts the MPC contract.")

EXIT_FAILED = 1


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; port 0: any free port) -> (host, port)."""
    try:
        return parse_host_port(listen, allow_zero=True)
    except ValueError as exc:
        fail(f"--listen must be HOST:PORT or [V6]:PORT ({exc})")


@app.command("init")
def init(
    data: Path = typer.Option(
        ..., "--data", help="Data directory to create the ledger in.", file_okay=False
    ),
    accounts: str = typer.Option(..., "--accounts", help="Comma-separated account names."),
    tx_validity_blocks: int = typer.Option(
        DEFAULT_TX_VALIDITY_BLOCKS,
        "--tx-validity-blocks",
        help="How many blocks a transaction's block_height stays valid.",
    ),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Write the genesis block and one sealed full-access key file per account (DIR/keys/)."""
    names = [a.strip() for a in accounts.split(",") if a.strip()]
    if not names:
        fail("--accounts needs at least one account name")
    passphrase = passphrase_or_fail(passphrase_file)
    try:
        created = init_ledger(data, names, passphrase, tx_validity_blocks=tx_validity_blocks)
    except StorageError as exc:
        fail(str(exc))
    if as_json:
        emit_json(
            {
                "chain_id": created.chain_id,
                "data": str(data),
                "accounts": {
                    name: {"public_key": created.public_keys[name], "key_file": str(path)}
                    for name, path in created.key_files.items()
                },
            }
        )
        return
    typer.echo(f"ledger created in {data} (chain id {created.chain_id})")
    for name, path in created.key_files.items():
        typer.echo(f"  {name}: {created.public_keys[name]}  {path}")


@app.command("serve")
def serve(
    data: Path = typer.Option(..., "--data", help="Data directory of the ledger.", file_okay=False),
    listen: str = typer.Option("127.0.0.1:7700", "--listen", help="HOST:PORT to serve on."),
    idle_block_ms: int = typer.Option(
        DEFAULT_IDLE_BLOCK_MS,
        "--idle-block-ms",
        min=10,
        max=60_000,
        help="Produce an empty block after this long without transactions.",
    ),
) -> None:
    """Verify the block log, rebuild the state and serve the HTTP API until stopped."""
    from quorumkeep.ledger.server import ListenError, run_server  # FastAPI only when serving

    host, port = parse_listen(listen)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = run_server(
            data,
            host,
            port,
            idle_block_ms=idle_block_ms,
            announce=lambda line: typer.echo(line, err=True),
        )
    except LedgerCorrupted as exc:
        fail(f"{exc}; refusing to start", EXIT_FAILED)
    except (StorageError, ListenError) as exc:
        fail(str(exc), EXIT_FAILED)
    if status != 0:
        raise typer.Exit(status)


@app.command("status")
def status(
    ledger: str = typer.Option(..., "--ledger", help="Ledger URL."),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Chain id and head of a running ledger."""
    try:
        with LedgerClient(ledger) as client:
            body = client.status()
    except LedgerError as exc:
        fail(f"{exc.code}: {exc.message}", EXIT_FAILED)
    if as_json:
        emit_json(body)
    else:
        typer.echo(f"chain {body['chain_id']} at height {body['height']} ({body['head_hash']})")
