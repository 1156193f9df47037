"""One key provider per operator in a devnet: set up, registered, started, inspected; and the
operator's recording of a peers node's deal (docs/key-provider-protocol.md).

Each provider is its own process (``quorumkeep provider run``) with its own directory
``DIR/providers/<account>/`` and a passphrase kept in ``DIR/secrets/provider-<account>.
passphrase`` (a devnet keeps its secrets beside the data, see docs/devnet.md). It is
registered by its operator's full-access key — the ``register_key_provider`` call of
`quorumkeep provider init --register` — and serves plain HTTP on a free ``127.0.0.1`` port.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from quorumkeep.devnet import processes
from quorumkeep.devnet.defaults import START_TIMEOUT
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.layout import LOGS_DIR, DevnetDir
from quorumkeep.devnet.processes import ProcessRecord

if TYPE_CHECKING:
    from quorumkeep.devnet.network import Devnet

PROVIDERS_DIR = "providers"
PROVIDER_KIND = "provider"
PROVIDER_PASSPHRASE_ENV = "QUORUMKEEP_PROVIDER_PASSPHRASE"
PROVIDER_KDF_COST = "interactive"
PROVIDER_CONFIG = "provider.toml"
INIT_TIMEOUT = 60.0
HTTP_TIMEOUT = 2.0


def provider_name(account: str) -> str:
    return f"provider-{account}"


def provider_argv(directory: DevnetDir, record: ProcessRecord) -> list[str]:
    """The provider's run argv, rebuilt from DIR's current location."""
    assert record.directory is not None
    config = directory.resolve(record.directory) / PROVIDER_CONFIG
    return processes.cli_argv("provider", "run", "--config", str(config))


def provider_url(record: ProcessRecord) -> str:
    return f"http://127.0.0.1:{record.ports['http']}"


def init_providers(devnet: Devnet, accounts: Sequence[str]) -> list[ProcessRecord]:
    """``quorumkeep provider init`` for each account, concurrently; records each provider as
    a (not yet started) process. The caller holds the devnet lock and saves the record."""
    pending: list[tuple[ProcessRecord, subprocess.Popen[bytes]]] = []
    try:
        for account in accounts:
            name = provider_name(account)
            if name in devnet.record.processes:
                raise DevnetError("provider_exists", f"the devnet already has {name}")
            if account not in devnet.record.accounts:
                raise DevnetError("unknown_account", f"the devnet has no account {account!r}")
            port = devnet.free_port()
            directory = f"{PROVIDERS_DIR}/{account}"
            secret = f"provider-{account}"
            record = ProcessRecord(
                name=name,
                kind=PROVIDER_KIND,
                argv=[],
                log=f"{LOGS_DIR}/{name}.log",
                ports={"http": port},
                env_secrets={PROVIDER_PASSPHRASE_ENV: secret},
                account=account,
                directory=directory,
            )
            devnet.record.processes[name] = record
            passphrase = devnet.secrets.get_or_create(secret)
            argv = processes.cli_argv(
                "provider",
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
                PROVIDER_PASSPHRASE_ENV,
                "--kdf-cost",
                PROVIDER_KDF_COST,
            )
            child = processes.start_setup(argv, devnet.path, {PROVIDER_PASSPHRASE_ENV: passphrase})
            pending.append((record, child))
        devnet.save()
        for record, child in pending:
            processes.finish_setup(
                child,
                devnet.dir.resolve(record.log),
                command="provider init",
                subject=str(record.account),
                code="provider_init_failed",
                timeout=INIT_TIMEOUT,
            )
        return [record for record, _ in pending]
    finally:
        processes.kill_unfinished(child for _, child in pending)


def register(devnet: Devnet, account: str) -> int:
    """The operator registers its provider (``register_key_provider``); the block height."""
    from quorumkeep.cli.provider import registration_of
    from quorumkeep.daemon.service_identity import (
        KEY_PROVIDER_IDENTITY,
        ServiceIdentityError,
        read_public_identity,
    )
    from quorumkeep.ledger.errors import LedgerError
    from quorumkeep.provider.config import load_config
    from quorumkeep.provider.errors import ProviderError

    record = devnet.process(provider_name(account))
    assert record.directory is not None
    directory = devnet.dir.resolve(record.directory)
    try:
        config = load_config(directory / PROVIDER_CONFIG)
        public = read_public_identity(directory, KEY_PROVIDER_IDENTITY)
        registration = registration_of(
            config, public.identity_public_key, public.encryption_public_key
        )
        with devnet.client() as client:
            outcome = client.call(devnet.signer(account), "register_key_provider", registration)
    except (ProviderError, ServiceIdentityError) as exc:
        raise DevnetError("provider_register_failed", f"{account}: {exc.message}") from None
    except LedgerError as exc:
        raise DevnetError(
            "provider_register_failed", f"{account}: {exc.code}: {exc.message}"
        ) from None
    return outcome.block_height


def record_deal(devnet: Devnet, node: str) -> int:
    """The operator records the deal a peers node's ``node init`` wrote; the block height."""
    from quorumkeep.ledger.errors import LedgerError
    from quorumkeep.node.key_providers import PeersKeySource
    from quorumkeep.node.keystore_errors import KeystoreError

    record = devnet.process(node)
    assert record.directory is not None and record.account is not None
    source = PeersKeySource(
        devnet.dir.resolve(record.directory), account=record.account, ledger_url=""
    )
    try:
        deal = source.recorded_deal()
        with devnet.client() as client:
            outcome = client.call(devnet.signer(record.account), "record_key_providers", deal)
    except KeystoreError as exc:
        raise DevnetError("record_deal_failed", f"{node}: {exc}") from None
    except LedgerError as exc:
        raise DevnetError("record_deal_failed", f"{node}: {exc.code}: {exc.message}") from None
    return outcome.block_height


def status(devnet: Devnet, name: str, timeout: float = HTTP_TIMEOUT) -> dict[str, Any]:
    record = devnet.process(name)
    try:
        response = httpx.get(provider_url(record) + "/v1/status", timeout=timeout)
    except httpx.HTTPError as exc:
        raise DevnetError("provider_unreachable", f"{name}: {type(exc).__name__}") from None
    body: dict[str, Any] = response.json()
    return body


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
            if httpx.get(provider_url(record) + "/health", timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise DevnetError(
                "provider_not_ready",
                f"{name} did not answer /health within {timeout:g} s; read {devnet.log_path(name)}",
            )
        time.sleep(0.05)  # bounded start-up wait: nothing to long-poll before it listens
