"""`quorumkeep operator …`: what an operator does for its node with its full-access key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer

from quorumkeep.cli.keys import (
    JSON_OUTPUT,
    PASSPHRASE_FILE,
    emit_json,
    fail,
    report_outcome,
    signer_or_fail,
)
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError

app = typer.Typer(no_args_is_help=True, help="Operator actions for a node.")


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
    from quorumkeep.operator import actions
    from quorumkeep.operator.errors import OperatorError
    from quorumkeep.operator.inputs import read_node_info

    try:
        info = read_node_info(node_info, "--node-info")
    except OperatorError as exc:
        fail(exc.message)
    if info.account != account:
        fail(f"the node info is for account {info.account!r}, not {account!r}")
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = actions.add_node_key(client, signer, info)
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if outcome is not None:
        report_outcome(outcome, as_json)
    elif as_json:
        emit_json({"status": "exists", "public_key": info.signer_public_key.hex()})
    else:
        typer.echo(f"ok: {info.signer_public_key.hex()} already is a node key")


# --- backup service and migrations (logic: quorumkeep.operator) ---------------------------

ACCOUNT_OPTION = typer.Option(..., "--account", help="The operator's account.")
KEY_OPTION = typer.Option(
    ..., "--key", help="A full-access key file of that account.", dir_okay=False
)
LEDGER_OPTION = typer.Option(..., "--ledger", help="Ledger URL.")
WAIT_TIMEOUT = typer.Option(
    120.0, "--timeout", min=0.1, help="Seconds --wait follows the migration before giving up."
)
EXIT_FAILED = 1


def _operator_failed(exc: Exception) -> NoReturn:
    """An OperatorError or LedgerError as one line, exit 1."""
    code = getattr(exc, "code", "error")
    message = getattr(exc, "message", str(exc))
    if isinstance(exc, LedgerError):
        fail(f"{code}: {message}", EXIT_FAILED)
    fail(message, EXIT_FAILED)


@app.command("register-backup-service")
def register_backup_service(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    backup_dir: str = typer.Option(
        ...,
        "--backup-dir",
        help="The backup service's directory (from `backup init`), or the registration JSON "
        "it printed (a file or the JSON itself).",
    ),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Register (or replace) the account's backup service in the contract."""
    from quorumkeep.operator import actions
    from quorumkeep.operator.errors import OperatorError
    from quorumkeep.operator.inputs import read_backup_registration

    try:
        registration = read_backup_registration(backup_dir)
    except OperatorError as exc:
        fail(exc.message)
    if registration.account is not None and registration.account != account:
        fail(f"the backup service is for account {registration.account!r}, not {account!r}")
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = actions.register_backup_service(client, signer, registration)
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if as_json:
        emit_json({"block_height": outcome.block_height, "tx_hash": outcome.tx_hash,
                   **registration.to_json()})  # fmt: skip
        return
    typer.echo(
        f"ok: {account}'s backup service registered at block {outcome.block_height} "
        f"(identity key {registration.identity_public_key.hex()})"
    )


@app.command("record-key-providers")
def record_key_providers(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    node_dir: Path = typer.Option(
        ...,
        "--node",
        help="The node's directory (`node init --key-source peers`).",
        file_okay=False,
    ),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Record in the contract which key providers hold the node's storage key (its deal)."""
    from quorumkeep.ledger.transaction import FunctionCall
    from quorumkeep.node.key_providers import PeersKeySource
    from quorumkeep.node.keystore_errors import KeystoreError

    source = PeersKeySource(node_dir, account=account, ledger_url=ledger)
    try:
        deal = source.recorded_deal()
    except KeystoreError as exc:
        fail(str(exc))
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = client.submit(signer, [FunctionCall("record_key_providers", deal)])
    except LedgerError as exc:
        _operator_failed(exc)
    if not outcome.ok:
        report_outcome(outcome, as_json)
        return
    if as_json:
        emit_json({"block_height": outcome.block_height, "tx_hash": outcome.tx_hash, **deal})
        return
    holders = ", ".join(h["provider"] for h in deal["holders"])
    typer.echo(
        f"ok: {account}'s storage key recorded as {deal['threshold']}-of-"
        f"{len(deal['holders'])} with {holders} (epoch {deal['epoch']}) at block "
        f"{outcome.block_height}"
    )


@app.command("register-key-provider")
def register_key_provider(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    provider_dir: Path = typer.Option(
        ...,
        "--provider-dir",
        help="The key provider's directory (`provider init`).",
        file_okay=False,
    ),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Register (or replace) the account's key provider in the contract."""
    from quorumkeep.cli.provider import registration_of
    from quorumkeep.daemon.service_identity import (
        KEY_PROVIDER_IDENTITY,
        ServiceIdentityError,
        read_public_identity,
    )
    from quorumkeep.ledger.transaction import FunctionCall
    from quorumkeep.provider.config import CONFIG_FILE_NAME, load_config
    from quorumkeep.provider.errors import ProviderError

    try:
        config = load_config(provider_dir / CONFIG_FILE_NAME)
        public = read_public_identity(provider_dir, KEY_PROVIDER_IDENTITY)
    except (ProviderError, ServiceIdentityError) as exc:
        fail(exc.message)
    if public.account != account:
        fail(f"the key provider is for account {public.account!r}, not {account!r}")
    registration = registration_of(config, public.identity_public_key, public.encryption_public_key)
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = client.submit(signer, [FunctionCall("register_key_provider", registration)])
    except LedgerError as exc:
        _operator_failed(exc)
    report_outcome(outcome, as_json)


@app.command("deregister-key-provider")
def deregister_key_provider(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Deregister the account's key provider; the nodes it held pieces for re-deal."""
    from quorumkeep.ledger.transaction import FunctionCall

    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = client.submit(signer, [FunctionCall("deregister_key_provider", {})])
    except LedgerError as exc:
        _operator_failed(exc)
    report_outcome(outcome, as_json)


@app.command("vote-recovery-key")
def vote_recovery_key(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    public_key: Path = typer.Option(
        ..., "--public-key", help="The recovery key: ers-public.pem or ers-public.json."
    ),
    domain: int = typer.Option(0, "--domain", help="Domain id."),
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Vote the domain's emergency recovery key (in force once every participant voted it)."""
    from quorumkeep.ers.errors import ErsError
    from quorumkeep.ers.keys import load_public
    from quorumkeep.operator import actions
    from quorumkeep.operator.errors import OperatorError

    try:
        public = load_public(public_key)
    except ErsError as exc:
        fail(f"--public-key: {exc.message}")
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = actions.vote_recovery_key(client, signer, domain, public)
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if as_json:
        emit_json({"block_height": outcome.block_height, "tx_hash": outcome.tx_hash,
                   "fingerprint": public.fingerprint.hex(), **(outcome.value or {})})  # fmt: skip
        return
    value = outcome.value or {}
    typer.echo(
        f"ok: {account} voted recovery key {public.fingerprint.hex()} for domain {domain} "
        f"({value.get('votes')} of {value.get('required')} votes"
        + ("; in force)" if value.get("set") else ")")
    )


def _follow(
    ledger: str,
    account: str,
    *,
    since: int | None,
    wait: bool,
    timeout: float,
    live: bool,
) -> Any:
    """Follow ``account``'s migration (from block ``since``, or from what is open now)."""
    import asyncio

    from rich.live import Live

    from quorumkeep.cli.console import console as make_console
    from quorumkeep.cli.console import print_table
    from quorumkeep.ledger.client import AsyncLedgerClient
    from quorumkeep.operator.display import progress_table
    from quorumkeep.operator.progress import (
        CANCELLED,
        NONE,
        REPLACED,
        MigrationProgress,
        MigrationWatcher,
        all_done,
    )

    async def run(update: Any) -> Any:
        async with AsyncLedgerClient(ledger) as client:
            watcher = MigrationWatcher(client, [account], probe_nodes=wait)
            if since is None:
                await watcher.start_from_views()
                if wait and watcher.progress[account].state == NONE:
                    # Nothing open: waiting is over before it began. Say how the account's
                    # last migration ended (e.g. it concluded a moment ago), not just "none".
                    await watcher.start_from_height(0, only_migrations=True)
                    if watcher.progress[account].state in (CANCELLED, REPLACED):
                        # an old cancelled one is history, not the outcome of this wait
                        watcher.progress[account] = MigrationProgress(account)
            else:
                await watcher.start_from_height(since)
            if not wait:
                await watcher.probe_once()
                return watcher.progress[account]

            def explain(progress: Any) -> str:
                p = progress[account]
                where = p.node_error or f"the new node reports role {p.node_role or '?'}"
                return (
                    f"{account}'s migration from block {p.started_height} is still open ({where});"
                    " read the new node's log and the backup service's log"
                )

            progress = await watcher.wait(
                all_done, timeout=timeout, on_update=update, explain=explain
            )
            return progress[account]

    if not live:
        return asyncio.run(run(lambda _: None))
    console = make_console(stderr=True)
    with Live(console=console, refresh_per_second=10, transient=True) as display:
        result = asyncio.run(
            run(lambda progress: display.update(progress_table(progress.values(), "migration")))
        )
    print_table(console, progress_table([result], "migration"))
    return result


@app.command("start-migration")
def start_migration(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    new_node: str = typer.Option(
        ...,
        "--new-node",
        help="The new node's directory (from `node init`), or the participant info it printed "
        "(a file or the JSON itself).",
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow the migration until it ends."),
    timeout: float = WAIT_TIMEOUT,
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Move the account's node to a new machine: authorize the new node's signer key (if
    needed) and start the migration; the backup service then pushes the shares by itself."""
    from quorumkeep.operator import actions
    from quorumkeep.operator.errors import OperatorError
    from quorumkeep.operator.inputs import read_node_info

    try:
        info = read_node_info(new_node)
    except OperatorError as exc:
        fail(exc.message)
    if info.account != account:
        fail(f"the new node is for account {info.account!r}, not {account!r}")
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            started = actions.start_migration(client, signer, info)
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    for warning in started.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if not as_json:
        verb = "authorized" if started.node_key == "added" else "already authorized"
        typer.echo(f"new node's signer key {info.signer_public_key.hex()}: {verb}")
        typer.echo(
            f"ok: migration of {account} to {info.web_url} started at block "
            f"{started.started_height}"
        )
        if not wait:
            typer.echo(
                f"follow it: quorumkeep operator migration-status --account {account} "
                f"--ledger {ledger} --since {started.started_height} --wait"
            )
    if not wait:
        if as_json:
            emit_json(started.to_json())
        return
    _status_outcome(ledger, account, started.started_height, True, timeout, as_json,
                    extra=started.to_json() if as_json else None)  # fmt: skip


@app.command("failover")
def failover(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    standby: str = typer.Option(
        ...,
        "--standby",
        help="The warm standby's directory, or the participant info its `node init` printed.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Start the migration even if the standby does not hold the epoch."
    ),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Follow the migration until it concludes (default)."
    ),
    timeout: float = WAIT_TIMEOUT,
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Switch the account's participant to its warm standby: checks the standby holds the
    epoch in force, then migrates to it; it concludes from the shares it holds."""
    from quorumkeep.operator import failover as failing_over
    from quorumkeep.operator.errors import OperatorError
    from quorumkeep.operator.inputs import read_node_info

    try:
        info = read_node_info(standby, "--standby")
    except OperatorError as exc:
        fail(exc.message)
    if info.account != account:
        fail(f"the standby is for account {info.account!r}, not {account!r}")
    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            started, status = failing_over.failover(client, signer, info, force=force)
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if not as_json:
        held = (status or {}).get("warm_standby") or {}
        typer.echo(
            f"standby {info.web_url} holds epoch {held.get('held_epoch', '?')}"
            + (" (not checked: --force)" if status is None else "")
        )
        typer.echo(
            f"ok: fail-over of {account} to {info.web_url} started at block "
            f"{started.started_height}"
        )
    if not wait:
        if as_json:
            emit_json(started.to_json())
        return
    _status_outcome(ledger, account, started.started_height, True, timeout, as_json,
                    extra=started.to_json() if as_json else None)  # fmt: skip


def _status_outcome(
    ledger: str,
    account: str,
    since: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    from quorumkeep.cli.console import console as make_console
    from quorumkeep.cli.console import print_table
    from quorumkeep.operator.display import progress_table
    from quorumkeep.operator.errors import OperatorError
    from quorumkeep.operator.progress import CONCLUDED, NONE, OPEN

    try:
        progress = _follow(
            ledger, account, since=since, wait=wait, timeout=timeout, live=wait and not as_json
        )
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if as_json:
        body = progress.to_json()
        emit_json({**extra, "status": body} if extra is not None else body)
    elif progress.state == NONE:
        typer.echo(f"no migration open for {account}; {_serving_node(ledger, account)}")
    elif not wait:
        print_table(make_console(), progress_table([progress], "migration"))
    elif progress.state == CONCLUDED and progress.seconds is not None:
        typer.echo(
            f"concluded: {account}'s node is now {progress.destination.get('web_url')} "
            f"(blocks {progress.started_height} -> {progress.concluded_height}, "
            f"{progress.seconds:.3f} s of ledger time)"
        )
    if wait and progress.state not in (CONCLUDED, OPEN, NONE):
        fail(
            f"the migration of {account} ended {progress.state}"
            + (f" ({progress.cancel_reason})" if progress.cancel_reason else ""),
            EXIT_FAILED,
        )


def _serving_node(ledger: str, account: str) -> str:
    """Which node the contract lists for ``account`` (for a status with nothing open)."""
    try:
        with LedgerClient(ledger) as client:
            view = client.view("participants")
    except LedgerError as exc:
        return f"participants unreadable ({exc.code})"
    for member in view.get("participants", []):
        if member.get("account") == account:
            return (
                f"its node is participant {member['participant_id']} at {member['web_url']} "
                f"(TLS key {str(member['tls_public_key'])[:16]}…)"
            )
    return f"{account} is not a participant"


@app.command("migration-status")
def migration_status(
    account: str = ACCOUNT_OPTION,
    ledger: str = LEDGER_OPTION,
    since: int | None = typer.Option(
        None,
        "--since",
        min=0,
        help="Replay from this block (e.g. the one start-migration printed) instead of "
        "looking only at what is open now.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Follow the open migration live until it concludes or ends."
    ),
    timeout: float = WAIT_TIMEOUT,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Progress of the account's migration: started → shares pushed → imported → concluded.

    With --wait it follows the contract's events (and the new node's /status, pinned to its
    registered TLS key) until the migration concludes (exit 0) or is cancelled (exit 1).
    """
    _status_outcome(ledger, account, since, wait, timeout, as_json)


@app.command("cancel-migration")
def cancel_migration(
    account: str = ACCOUNT_OPTION,
    key: Path = KEY_OPTION,
    ledger: str = LEDGER_OPTION,
    passphrase_file: Path | None = PASSPHRASE_FILE,
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Cancel the account's open migration (the old node stays the participant)."""
    from quorumkeep.operator import actions
    from quorumkeep.operator.errors import OperatorError

    signer = signer_or_fail(key, account, passphrase_file)
    try:
        with LedgerClient(ledger) as client:
            outcome = actions.cancel_migration(client, signer)
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if as_json:
        emit_json({"block_height": outcome.block_height, "tx_hash": outcome.tx_hash})
        return
    typer.echo(f"ok: {account}'s migration cancelled at block {outcome.block_height}")


@app.command("backup-status")
def backup_status(
    ledger: str = LEDGER_OPTION,
    check: bool = typer.Option(
        False,
        "--check",
        help="Exit 1 unless every operator confirmed a backup of the keyset in force and "
        "every domain signs (for alerts).",
    ),
    as_json: bool = JSON_OUTPUT,
) -> None:
    """Backup freshness: each operator's last confirmed backup (epoch, block, age) beside
    the epoch in force, and each domain's backup gate (who is missing)."""
    import time

    from quorumkeep.cli.console import console as make_console
    from quorumkeep.cli.console import print_table
    from quorumkeep.operator.backup_status import read_freshness
    from quorumkeep.operator.display import backup_freshness_tables
    from quorumkeep.operator.errors import OperatorError

    try:
        with LedgerClient(ledger) as client:
            found = read_freshness(client, time.time())
    except (OperatorError, LedgerError) as exc:
        _operator_failed(exc)
    if as_json:
        emit_json(found.to_json())
    else:
        out = make_console()
        for table in backup_freshness_tables(found):
            print_table(out, table)
    if check and not found.healthy:
        behind = [o.account for o in found.operators if not o.current]
        closed = [str(d["domain_id"]) for d in found.domains if not d["signing_allowed"]]
        fail(
            "backups behind: "
            + (f"no confirmed backup of epoch {found.epoch} from {', '.join(behind)}" if behind
               else "every operator current")
            + (f"; domains {', '.join(closed)} refuse to sign" if closed else ""),
            EXIT_FAILED,
        )  # fmt: skip
