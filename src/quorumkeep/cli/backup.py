"""`quorumkeep backup …`: set up, run, inspect and verify a backup service.

The logic lives in :mod:`quorumkeep.backup`; these commands parse options, print, and exit
with 0 (ok), 1 (refused or invalid) or 2 (usage or setup error). Nothing printed here ever
contains a share, a private key or a passphrase.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import typer

from quorumkeep.backup.attestation import backup_evidence
from quorumkeep.backup.config import (
    CONFIG_FILE_NAME,
    DEFAULT_PASSPHRASE_ENV,
    BackupConfig,
    PassphraseConfig,
    config_from_mapping,
    load_config,
    write_config,
)
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.backup.identity import create_identity, read_public_identity, unlock
from quorumkeep.backup.store import BackupStore
from quorumkeep.backup.verify import store_status, verify_backup
from quorumkeep.cli.keys import EXIT_REJECTED, emit_json, fail, report_outcome
from quorumkeep.crypto.seal import KDF_COSTS
from quorumkeep.daemon.attestation import AttestationUnavailable
from quorumkeep.ledger.client import AsyncLedgerClient, LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.keyfile import KeyFileError, load_signer, read_passphrase
from quorumkeep.ledger.transaction import AddKey, FunctionCall
from quorumkeep.operator.actions import backup_permission

app = typer.Typer(no_args_is_help=True, help="Back up a node's key shares and push them back.")

CONFIG_OPTION = typer.Option(..., "--config", help="Path of backup.toml.", dir_okay=False)
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")


def _load(config: Path) -> BackupConfig:
    try:
        return load_config(config)
    except BackupServiceError as exc:
        fail(exc.message)


def _stamp(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds")


@app.command("init")
def init(
    account: str = typer.Option(..., "--account", help="The operator's account."),
    directory: Path = typer.Option(..., "--dir", help="Directory for keys, store and config."),
    ledger: str = typer.Option(
        "http://127.0.0.1:7700", "--ledger", help="Ledger URL the service follows."
    ),
    listen: str | None = typer.Option(
        None, "--listen", help="HOST:PORT for /health, /status and /metrics (plain HTTP)."
    ),
    passphrase_env: str | None = typer.Option(
        None,
        "--passphrase-env",
        help=f"Environment variable holding the backup passphrase (default "
        f"{DEFAULT_PASSPHRASE_ENV}).",
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="File holding the backup passphrase.", dir_okay=False
    ),
    kdf_cost: str = typer.Option(
        "moderate",
        "--kdf-cost",
        help="Argon2id cost: moderate, interactive or minimum (tests only).",
    ),
    register: bool = typer.Option(
        False, "--register", help="Submit register_backup_service with --operator-key."
    ),
    operator_key: Path | None = typer.Option(
        None, "--operator-key", help="A full-access key file of the account.", dir_okay=False
    ),
    operator_passphrase_file: Path | None = typer.Option(
        None,
        "--operator-passphrase-file",
        help="Passphrase of the operator key file (default: env QUORUMKEEP_PASSPHRASE).",
        dir_okay=False,
    ),
    as_json: bool = JSON_OPTION,
    attestation: str = typer.Option(
        "none", "--attestation", help="How the service obtains its quote: none, dev or tdx."
    ),
    dev_platform_key_file: Path | None = typer.Option(
        None, "--dev-platform-key-file", help="dev: the development platform key (hex seed)."
    ),
    key_provider: Path | None = typer.Option(
        None,
        "--key-provider",
        help="A key provider's provider.toml (provider init) the service also runs.",
        dir_okay=False,
    ),
) -> None:
    """Create the service's keys, its store and backup.toml; print the registration."""
    if kdf_cost not in KDF_COSTS:
        fail(f"--kdf-cost must be one of {', '.join(KDF_COSTS)}")
    if passphrase_env is not None and passphrase_file is not None:
        fail("give at most one of --passphrase-env and --passphrase-file")
    if register and operator_key is None:
        fail("--register needs --operator-key")
    directory = directory.resolve()
    source: dict[str, Any] = (
        {"passphrase_file": str(passphrase_file.resolve())}
        if passphrase_file is not None
        else {"passphrase_env": passphrase_env or DEFAULT_PASSPHRASE_ENV}
    )
    try:
        config = config_from_mapping(
            {
                "account": account,
                "dir": str(directory),
                "ledger_url": ledger,
                "listen": listen,
                "key_provider": None if key_provider is None else str(key_provider.resolve()),
                "passphrase": PassphraseConfig(**source).model_dump(exclude_none=True),
                **(
                    {}
                    if attestation == "none"
                    else {
                        "attestation": {
                            "kind": attestation,
                            **(
                                {"dev_platform_key_file": str(dev_platform_key_file.resolve())}
                                if dev_platform_key_file is not None
                                else {}
                            ),
                        }
                    }
                ),
            },
            base_dir=directory,
        )
    except BackupServiceError as exc:
        fail(exc.message)
    config_path = directory / CONFIG_FILE_NAME
    if config_path.exists():
        fail(f"{config_path} exists; this directory already holds a backup service")
    signer = None
    if register:
        assert operator_key is not None
        try:
            signer = load_signer(operator_key, read_passphrase(operator_passphrase_file), account)
        except KeyFileError as exc:
            fail(str(exc))
    try:
        passphrase = config.read_passphrase()
        directory.mkdir(parents=True, exist_ok=True)
        opslimit, memlimit = KDF_COSTS[kdf_cost]
        identity, key = create_identity(
            directory, account, passphrase, opslimit=opslimit, memlimit=memlimit
        )
        BackupStore.open(directory, account, identity.signer.public_key, key, create=True).close()
        write_config(config, config_path)
    except BackupServiceError as exc:
        fail(exc.message)
    registration: dict[str, Any] = dict(identity.public.registration())
    evidence = _evidence(config, directory)
    if evidence is not None:
        registration["attestation"] = evidence
    typer.echo(f"backup service initialized in {directory} for account {account}", err=True)
    if signer is None:
        typer.echo(json.dumps(registration, indent=2, sort_keys=True))
        return
    try:
        with LedgerClient(config.ledger_url) as client:
            # One transaction: the identity key's access key (confirm_backup and
            # submit_attestation) and the registration take effect together.
            outcome = client.submit(
                signer,
                [
                    AddKey(identity.signer.public_key, backup_permission()),
                    FunctionCall("register_backup_service", dict(registration)),
                ],
            )
    except LedgerError as exc:
        typer.echo(json.dumps(registration, indent=2, sort_keys=True))
        fail(f"registration not submitted ({exc.code}: {exc.message})", EXIT_REJECTED)
    if not as_json:
        typer.echo(json.dumps(registration, indent=2, sort_keys=True))
    report_outcome(outcome, as_json)


def _evidence(config: BackupConfig, directory: Path) -> dict[str, Any] | None:
    try:
        public = read_public_identity(directory)
        return asyncio.run(backup_evidence(config.attestation, public))
    except (BackupServiceError, AttestationUnavailable) as exc:
        fail(f"attestation: {getattr(exc, 'message', exc)}")


@app.command("attest")
def attest(
    config: Path = CONFIG_OPTION,
) -> None:
    """Print the service's evidence as ``submit_attestation`` arguments (role
    backup_service): a quote binding its identity and encryption keys. The operator
    submits it (``quorumkeep contract call submit_attestation --args …``)."""
    loaded = _load(config)
    evidence = _evidence(loaded, loaded.dir)
    if evidence is None:
        fail("backup.toml has no [attestation] section")
    typer.echo(json.dumps({"role": "backup_service", "attestation": evidence}))


@app.command("run")
def run(
    config: Path = CONFIG_OPTION,
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
) -> None:
    """Run the backup service until SIGTERM or SIGINT."""
    from quorumkeep.backup.process import run_service  # the web stack: only `run` needs it

    code = run_service(config, log_level=log_level)
    if code:
        raise typer.Exit(code)


@app.command("status")
def status(config: Path = CONFIG_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Backups held, their age and the last verification (no passphrase needed)."""

    cfg = _load(config)
    try:
        public = read_public_identity(cfg.dir)
        store = BackupStore.open(cfg.dir, cfg.account, public.identity_public_key, None)
    except BackupServiceError as exc:
        fail(exc.message)
    try:
        document = store_status(store, time.time())
    finally:
        store.close()
    document.update(public.registration())
    if as_json:
        emit_json(document)
        return
    typer.echo(f"account {cfg.account}, identity key {public.identity_public_key.hex()}")
    if not document["backups"]:
        typer.echo("no backup held yet")
    for backup in document["backups"]:
        typer.echo(
            f"epoch {backup['epoch']} domains {backup['domains']} participant "
            f"{backup['participant_id']}: stored {_stamp(backup['stored_at'])}, verified "
            f"{_stamp(backup['verified_at'])}"
        )
    if document["age_seconds"] is not None:
        typer.echo(f"newest backup is {document['age_seconds']:.0f}s old")
    last = document["last_verify"]
    if last is None:
        typer.echo("last verify: never")
    else:
        verdict = "valid" if last.get("valid") else "INVALID"
        typer.echo(f"last verify: {_stamp(last.get('checked_at'))} {verdict}: {last.get('reason')}")


@app.command("verify")
def verify(config: Path = CONFIG_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Check the newest backup against the contract; exit 1 unless it is valid."""

    cfg = _load(config)

    async def check() -> dict[str, Any]:
        passphrase = cfg.read_passphrase()
        identity, key = await asyncio.to_thread(unlock, cfg.dir, passphrase, cfg.account)
        store = BackupStore.open(cfg.dir, cfg.account, identity.signer.public_key, key)
        try:
            async with AsyncLedgerClient(cfg.ledger_url, timeout=cfg.request_timeout) as ledger:
                return await verify_backup(store, ledger, cfg.account)
        finally:
            store.close()

    try:
        outcome = asyncio.run(check())
    except BackupServiceError as exc:
        fail(exc.message)
    except LedgerError as exc:
        fail(f"cannot read the contract ({exc.code}: {exc.message})", EXIT_REJECTED)
    if as_json:
        emit_json(outcome)
    else:
        verdict = "valid" if outcome["valid"] else "INVALID"
        typer.echo(f"{verdict}: {outcome['reason']}")
        for backup in outcome["backups"]:
            state = "opens" if backup["opens"] else f"DOES NOT OPEN ({backup.get('problem')})"
            current = ", current keyset" if backup["current"] else ""
            typer.echo(f"  epoch {backup['epoch']} domains {backup['domains']}: {state}{current}")
    if not outcome["valid"]:
        raise typer.Exit(EXIT_REJECTED)


if __name__ == "__main__":  # `python -m quorumkeep.cli.backup` until main.py registers the group
    os.environ.setdefault("COLUMNS", "100")
    app()
