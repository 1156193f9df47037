"""`quorumkeep provider …`: set up, run and inspect a key provider.

The logic lives in :mod:`quorumkeep.provider`; these commands parse options, print, and exit
with 0 (ok), 1 (refused) or 2 (usage or setup error). Nothing printed here ever contains a
piece, a private key or a passphrase: ``status`` reads public columns only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from quorumkeep import __version__
from quorumkeep.attest.binding import Role, report_data
from quorumkeep.backup.config import PassphraseConfig
from quorumkeep.cli.keys import EXIT_REJECTED, emit_json, fail, report_outcome
from quorumkeep.crypto.seal import KDF_COSTS
from quorumkeep.daemon.attestation import AttestationConfig, AttestationUnavailable, quote_source
from quorumkeep.daemon.service_identity import (
    KEY_PROVIDER_IDENTITY,
    ServiceIdentityError,
    create_identity,
    read_public_identity,
)
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.keyfile import KeyFileError, load_signer, read_passphrase
from quorumkeep.ledger.transaction import FunctionCall
from quorumkeep.provider.config import (
    CONFIG_FILE_NAME,
    DEFAULT_PASSPHRASE_ENV,
    ProviderConfig,
    config_from_mapping,
    load_config,
    write_config,
)
from quorumkeep.provider.errors import ProviderError
from quorumkeep.provider.status import status_document
from quorumkeep.provider.store import PieceStore

app = typer.Typer(no_args_is_help=True, help="Hold pieces of other operators' storage keys.")

CONFIG_OPTION = typer.Option(..., "--config", help="Path of provider.toml.", dir_okay=False)
JSON_OPTION = typer.Option(False, "--json", help="Machine-readable output.")


def registration_of(
    config: ProviderConfig, identity_public_key: bytes, encryption: bytes
) -> dict[str, str]:
    """The arguments of ``register_key_provider``."""
    return {
        "identity_public_key": identity_public_key.hex(),
        "encryption_public_key": encryption.hex(),
        "url": config.public_url,
    }


@app.command("init")
def init(
    account: str = typer.Option(..., "--account", help="The operator's account."),
    directory: Path = typer.Option(..., "--dir", help="Directory for keys, store and config."),
    ledger: str = typer.Option("http://127.0.0.1:7700", "--ledger", help="Ledger URL."),
    listen: str = typer.Option(..., "--listen", help="HOST:PORT the provider serves on."),
    url: str | None = typer.Option(None, "--url", help="URL nodes use, if not http://<listen>."),
    passphrase_env: str | None = typer.Option(
        None,
        "--passphrase-env",
        help=f"Environment variable holding the passphrase (default {DEFAULT_PASSPHRASE_ENV}).",
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help="File holding the passphrase.", dir_okay=False
    ),
    kdf_cost: str = typer.Option(
        "moderate", "--kdf-cost", help="Argon2id cost: moderate, interactive or minimum (tests)."
    ),
    register: bool = typer.Option(
        False, "--register", help="Submit register_key_provider with --operator-key."
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
        "none", "--attestation", help="How the provider obtains its quote: none, dev or tdx."
    ),
    dev_platform_key_file: Path | None = typer.Option(
        None, "--dev-platform-key-file", help="dev: the development platform key (hex seed)."
    ),
) -> None:
    """Create the provider's keys, its store and provider.toml; print the registration."""
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
                "url": url,
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
    except ProviderError as exc:
        fail(exc.message)
    config_path = directory / CONFIG_FILE_NAME
    if config_path.exists():
        fail(f"{config_path} exists; this directory already holds a key provider")
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
            directory,
            account,
            passphrase,
            opslimit=opslimit,
            memlimit=memlimit,
            kind=KEY_PROVIDER_IDENTITY,
        )
        PieceStore.open(directory, account, identity.signer.public_key, key, create=True).close()
        write_config(config, config_path)
    except (ProviderError, ServiceIdentityError) as exc:
        fail(exc.message)
    registration: dict[str, Any] = dict(
        registration_of(config, identity.signer.public_key, identity.encryption.public_key)
    )
    evidence = _evidence(config, identity.signer.public_key, identity.encryption.public_key)
    if evidence is not None:
        registration["attestation"] = evidence
    typer.echo(f"key provider initialized in {directory} for account {account}", err=True)
    if signer is None:
        typer.echo(json.dumps(registration, indent=2, sort_keys=True))
        return
    try:
        with LedgerClient(config.ledger_url) as client:
            outcome = client.submit(
                signer, [FunctionCall("register_key_provider", dict(registration))]
            )
    except LedgerError as exc:
        typer.echo(json.dumps(registration, indent=2, sort_keys=True))
        fail(f"registration not submitted ({exc.code}: {exc.message})", EXIT_REJECTED)
    if not as_json:
        typer.echo(json.dumps(registration, indent=2, sort_keys=True))
    report_outcome(outcome, as_json)


def _evidence(config: ProviderConfig, identity: bytes, encryption: bytes) -> dict[str, Any] | None:
    """Evidence whose report_data binds the provider's identity and encryption keys (role
    key provider), or None without ``[attestation]``."""
    try:
        source = quote_source(
            config.attestation or AttestationConfig(), f"quorumkeep-provider {__version__}"
        )
        if source is None:
            return None
        return asyncio.run(source.evidence(report_data(Role.KEY_PROVIDER, identity, encryption)))
    except AttestationUnavailable as exc:
        fail(f"attestation: {exc}")


@app.command("run")
def run(
    config: Path = CONFIG_OPTION,
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
) -> None:
    """Run the key provider until SIGTERM or SIGINT."""
    from quorumkeep.provider.process import run_service  # the web stack: only `run` needs it

    code = run_service(config, log_level=log_level)
    if code:
        raise typer.Exit(code)


@app.command("status")
def status(config: Path = CONFIG_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Accounts and epochs held (no passphrase needed; never a piece)."""

    try:
        cfg = load_config(config)
        public = read_public_identity(cfg.dir, KEY_PROVIDER_IDENTITY)
        store = PieceStore.open(cfg.dir, cfg.account, public.identity_public_key, None)
    except (ProviderError, ServiceIdentityError) as exc:
        fail(exc.message)
    try:
        document = status_document(cfg.account, public.identity_public_key, store)
    finally:
        store.close()
    document["registration"] = registration_of(
        cfg, public.identity_public_key, public.encryption_public_key
    )
    if as_json:
        emit_json(document)
        return
    typer.echo(f"key provider of {cfg.account}, identity key {public.identity_public_key.hex()}")
    if not document["held"]:
        typer.echo("no piece held")
    for held in document["held"]:
        typer.echo(
            f"{held['account']}: epoch {held['epoch']}, index {held['index']} "
            f"(k = {held['threshold']})"
        )
