"""One backup service per operator in a devnet: set up, registered, started, inspected.

Each service is its own process (``quorumkeep backup run``) with its own directory
``DIR/backups/<account>/`` (keys, sealed store, ``backup.toml``) and a passphrase kept in
``DIR/secrets/backup-<account>.passphrase`` (a devnet keeps its secrets beside the data, see
docs/devnet.md). It is registered in the contract by its operator's full-access key — the
same ``register_backup_service`` call `quorumkeep operator register-backup-service` makes —
and serves ``/health``, ``/status`` and ``/metrics`` over plain HTTP on a free
``127.0.0.1`` port, where `devnet status` and the demo read it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from quorumkeep.devnet import attestation, processes
from quorumkeep.devnet.defaults import START_TIMEOUT
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.layout import LOGS_DIR, DevnetDir
from quorumkeep.devnet.processes import ProcessRecord

if TYPE_CHECKING:
    from quorumkeep.devnet.network import Devnet

BACKUPS_DIR = "backups"
BACKUP_KIND = "backup"
BACKUP_PASSPHRASE_ENV = "QUORUMKEEP_BACKUP_PASSPHRASE"
BACKUP_KDF_COST = "interactive"
"""Argon2id cost of the services' passphrase key: light, like the devnet's nodes."""
BACKUP_CONFIG = "backup.toml"
INIT_TIMEOUT = 60.0
HTTP_TIMEOUT = 2.0


def backup_name(account: str) -> str:
    return f"backup-{account}"


def backup_cli(*args: str) -> list[str]:
    """argv of ``quorumkeep backup ARGS…`` with this interpreter."""
    return processes.cli_argv("backup", *args)


def backup_argv(directory: DevnetDir, record: ProcessRecord) -> list[str]:
    """The service's run argv, rebuilt from DIR's current location."""
    assert record.directory is not None
    config = directory.resolve(record.directory) / BACKUP_CONFIG
    return backup_cli("run", "--config", str(config))


def backup_url(record: ProcessRecord) -> str:
    return f"http://127.0.0.1:{record.ports['http']}"


def init_backup_services(devnet: Devnet, accounts: Sequence[str]) -> list[ProcessRecord]:
    """``quorumkeep backup init`` for each account, concurrently; records each service as a
    (not yet started) process. The caller holds the devnet lock and saves the record."""
    pending: list[tuple[ProcessRecord, subprocess.Popen[bytes]]] = []
    try:
        for account in accounts:
            name = backup_name(account)
            if name in devnet.record.processes:
                raise DevnetError("backup_exists", f"the devnet already has {name}")
            if account not in devnet.record.accounts:
                raise DevnetError("unknown_account", f"the devnet has no account {account!r}")
            port = devnet.free_port()
            directory = f"{BACKUPS_DIR}/{account}"
            secret = f"backup-{account}"
            record = ProcessRecord(
                name=name,
                kind=BACKUP_KIND,
                argv=[],
                log=f"{LOGS_DIR}/{name}.log",
                ports={"http": port},
                env_secrets={BACKUP_PASSPHRASE_ENV: secret},
                account=account,
                directory=directory,
            )
            devnet.record.processes[name] = record
            passphrase = devnet.secrets.get_or_create(secret)
            argv = backup_cli(
                "init",
                "--account",
                account,
                "--dir",
                str(devnet.dir.resolve(directory)),
                "--ledger",
                devnet.ledger_url,
                "--listen",
                f"127.0.0.1:{port}",
                "--passphrase-env",
                BACKUP_PASSPHRASE_ENV,
                "--kdf-cost",
                BACKUP_KDF_COST,
                *attestation.cli_options(devnet.dev_platform_key),
            )
            child = processes.start_setup(argv, devnet.path, {BACKUP_PASSPHRASE_ENV: passphrase})
            pending.append((record, child))
        devnet.save()
        for record, child in pending:
            processes.finish_setup(
                child,
                devnet.dir.resolve(record.log),
                command="backup init",
                subject=str(record.account),
                code="backup_init_failed",
                timeout=INIT_TIMEOUT,
            )
        return [record for record, _ in pending]
    finally:
        processes.kill_unfinished(child for _, child in pending)


def register(devnet: Devnet, account: str) -> int:
    """The operator registers its backup service (``register_backup_service``); returns the
    block height."""
    from quorumkeep.ledger.errors import LedgerError
    from quorumkeep.operator.actions import register_backup_service
    from quorumkeep.operator.errors import OperatorError
    from quorumkeep.operator.inputs import read_backup_registration

    record = devnet.process(backup_name(account))
    assert record.directory is not None
    try:
        registration = read_backup_registration(str(devnet.dir.resolve(record.directory)))
        with devnet.client() as client:
            outcome = register_backup_service(client, devnet.signer(account), registration)
    except OperatorError as exc:
        raise DevnetError("backup_register_failed", f"{account}: {exc.message}") from None
    except LedgerError as exc:
        raise DevnetError(
            "backup_register_failed", f"{account}: {exc.code}: {exc.message}"
        ) from None
    return outcome.block_height


def status(devnet: Devnet, name: str, timeout: float = HTTP_TIMEOUT) -> dict[str, Any]:
    """The service's ``GET /status``; DevnetError if it does not answer."""
    record = devnet.process(name)
    try:
        response = httpx.get(backup_url(record) + "/status", timeout=timeout)
    except httpx.HTTPError as exc:
        raise DevnetError("backup_unreachable", f"{name}/status: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise DevnetError("backup_error", f"{name}/status: HTTP {response.status_code}")
    body: dict[str, Any] = response.json()
    return body


def metrics(devnet: Devnet, name: str, timeout: float = HTTP_TIMEOUT) -> str:
    record = devnet.process(name)
    try:
        response = httpx.get(backup_url(record) + "/metrics", timeout=timeout)
    except httpx.HTTPError as exc:
        raise DevnetError("backup_unreachable", f"{name}/metrics: {type(exc).__name__}") from None
    return response.text


def wait_healthy(devnet: Devnet, name: str, *, timeout: float = START_TIMEOUT) -> None:
    record = devnet.process(name)
    deadline = time.monotonic() + timeout
    while True:
        if not processes.is_running(record):
            tail = processes.log_tail(devnet.dir.resolve(record.log))
            raise DevnetError(
                "process_exited",
                f"{name} exited; read {devnet.log_path(name)}"
                + (f" (last lines: {tail})" if tail else ""),
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(backup_url(record) + "/health", timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise DevnetError(
                "backup_not_ready",
                f"{name} did not answer /health within {timeout:g} s; read {devnet.log_path(name)}",
            )
        time.sleep(0.05)  # bounded start-up wait: nothing to long-poll before it listens


def wait_for_backups(
    devnet: Devnet,
    names: Sequence[str],
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    what: str,
    on_tick: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Wait until every named service's ``/status`` satisfies ``predicate``.

    A service's status changes without a contract event (a fetch finishing), so this looks
    every 0.1 s, bounded by ``timeout``; a service that exits ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    while True:
        for name in names:
            record = devnet.process(name)
            if not processes.is_running(record):
                raise DevnetError("process_exited", f"{name} exited; read {devnet.log_path(name)}")
            try:
                seen[name] = status(devnet, name)
            except DevnetError as exc:
                seen[name] = {"error": exc.message}
        if on_tick is not None:
            on_tick(seen)
        missing = [n for n in names if "error" in seen[n] or not predicate(seen[n])]
        if not missing:
            return seen
        if time.monotonic() > deadline:
            detail = []
            for name in missing:
                entry = seen[name]
                reason = entry.get("error") or (entry.get("last_fetch") or {}).get("reason")
                detail.append(
                    f"{name} ({reason or 'no fetch result yet'}; read {devnet.log_path(name)})"
                )
            raise DevnetError("timeout", f"no {what} after {timeout:g} s from: {', '.join(detail)}")
        time.sleep(0.1)


def covers_epoch(epoch: int) -> Callable[[dict[str, Any]], bool]:
    """Predicate on a service's status: holds a backup of the current keyset at ``epoch``."""

    def check(entry: dict[str, Any]) -> bool:
        return bool(entry.get("covers_current_keyset")) and entry.get("newest_epoch") == epoch

    return check
