"""`quorumkeep ledger …`: create and run the ledger that hosts the MPC contract."""

from __future__ import annotations

from pathlib import Path

import typer

from quorumkeep.cli.keys import JSON_OUTPUT, PASSPHRASE_FILE, emit_json, fail, passphrase_or_fail
from quorumkeep.daemon import startup
from quorumkeep.ledger.chain import (
    DEFAULT_TX_VALIDITY_BLOCKS,
    DEFAULT_TX_VALIDITY_MS,
    MAX_TX_VALIDITY_MS,
    MIN_TX_VALIDITY_MS,
)
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerCorrupted, LedgerError
from quorumkeep.ledger.genesis import init_ledger
from quorumkeep.ledger.node import DEFAULT_IDLE_BLOCK_MS
from quorumkeep.ledger.snapshot import DEFAULT_SNAPSHOT_EVERY_BLOCKS
from quorumkeep.ledger.storage import BlockStore, StorageError
from quorumkeep.net.address import parse_host_port

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
    tx_validity_ms: int = typer.Option(
        DEFAULT_TX_VALIDITY_MS,
        "--tx-validity-ms",
        min=MIN_TX_VALIDITY_MS,
        max=MAX_TX_VALIDITY_MS,
        help="How long (block time, ms) a transaction's block_height stays valid.",
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
        created = init_ledger(
            data,
            names,
            passphrase,
            tx_validity_blocks=tx_validity_blocks,
            tx_validity_ms=tx_validity_ms,
        )
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
        max=86_400_000,
        help="Heartbeat: an empty block after this long without any block (at most half "
        "the ledger's tx validity time).",
    ),
    snapshot_every_blocks: int = typer.Option(
        DEFAULT_SNAPSHOT_EVERY_BLOCKS,
        "--snapshot-every-blocks",
        min=1,
        max=1_000_000,
        help="Snapshot the state every N blocks (also every 10,000 transactions and at a "
        "clean stop).",
    ),
    store: str = typer.Option(
        "sqlite", "--store", help="sqlite (one process, DIR/ledger.sqlite) or etcd (replicated)."
    ),
    etcd: str = typer.Option(
        "", "--etcd", help="etcd client URLs, comma-separated (with --store etcd)."
    ),
    etcd_prefix: str = typer.Option(
        "quorumkeep/ledger/", "--etcd-prefix", help="Key prefix of this ledger in etcd."
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
) -> None:
    """Verify the block log, rebuild the state and serve the HTTP API until stopped."""
    from quorumkeep.ledger.server import ListenError, run_server  # FastAPI only when serving

    host, port = parse_listen(listen)
    endpoints = [u.strip() for u in etcd.split(",") if u.strip()]
    if store not in ("sqlite", "etcd"):
        fail(f"--store must be sqlite or etcd, got {store!r}")
    if (store == "etcd") != bool(endpoints):
        fail("--etcd URL,... is needed with --store etcd, and only then")
    if any(not u.startswith(("http://", "https://")) for u in endpoints):
        fail("--etcd takes http(s):// URLs")
    if log_level.upper() not in startup.LOG_LEVELS:
        fail(f"--log-level must be one of {', '.join(startup.LOG_LEVELS)}")
    startup.configure_logging(log_level, startup.LIBRARY_LOGGERS)
    try:
        status = run_server(
            data,
            host,
            port,
            idle_block_ms=idle_block_ms,
            snapshot_every_blocks=snapshot_every_blocks,
            etcd=endpoints or None,
            etcd_prefix=etcd_prefix,
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


@app.command("prune")
def prune(
    data: Path = typer.Option(..., "--data", help="Data directory of the ledger.", file_okay=False),
    keep_blocks: int = typer.Option(
        ..., "--keep-blocks", min=0, help="Blocks to keep before the newest snapshot."
    ),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Delete the blocks behind the newest snapshot but the last N (the ledger must be
    stopped; genesis stays; the chain stays verifiable from the recorded anchor)."""
    from quorumkeep.ledger import snapshot

    try:
        store = BlockStore(data)
    except StorageError as exc:
        fail(str(exc), EXIT_FAILED)
    try:
        result = snapshot.prune(store, keep_blocks)
    except LedgerCorrupted as exc:
        fail(f"{exc}; not pruning", EXIT_FAILED)
    except ValueError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        store.close()
    if as_json:
        emit_json(
            {
                "snapshot_height": result.snapshot_height,
                "first_kept": result.first_kept,
                "deleted_blocks": result.deleted,
            }
        )
        return
    typer.echo(
        f"deleted {result.deleted} blocks; blocks from {result.first_kept} on are kept "
        f"(snapshot at {result.snapshot_height})"
    )


@app.command("verify")
def verify(
    data: Path = typer.Option(..., "--data", help="Data directory of the ledger.", file_okay=False),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Check every stored block, also those behind the snapshot start-up begins from: a
    full replay from genesis, or (after pruning) every link from the anchor (the ledger
    must be stopped)."""
    from quorumkeep.ledger import snapshot

    try:
        store = BlockStore(data)
    except StorageError as exc:
        fail(str(exc), EXIT_FAILED)
    try:
        first, head = snapshot.verify(store)
    except LedgerCorrupted as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        store.close()
    if as_json:
        emit_json({"first_checked": first, "head": head})
        return
    typer.echo(f"chain verified from block {first} to block {head}")
