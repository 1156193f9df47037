"""``quorumkeep node run``: one node process, one event loop, until SIGTERM or SIGINT.

Start order: storage key and identity (Argon2id, in a thread) → every stored presignature
forgotten and a new incarnation picked (node/incarnation.py) → ledger reachable (bounded
retries) → mesh listener → HTTPS web API → coordinator. Any failure on the way is one
readable log line and a non-zero exit (:data:`EXIT_STARTUP`); nothing half-started stays
behind. Stop order is the reverse: coordinator (cancels protocol runs), web server, mesh,
ledger client, keystore — then exit 0.

Exit codes: 0 stopped by a signal or — with ``exit_on_decommission`` — decommissioned (its
log line says which), 1 the node failed while running, 2 it could not start. Without that
option a decommissioned node stays up as a stand-by, so a later migration back to it works.
Log lines go to stderr as ``time level logger: event key=value ...``; they never hold a
secret.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import nacl.signing
from fastapi import APIRouter

from quorumkeep import __version__
from quorumkeep.crypto.errors import CryptoError
from quorumkeep.daemon import startup
from quorumkeep.daemon.attestation import AttestationConfig, AttestationUnavailable, quote_source
from quorumkeep.daemon.startup import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, StartupError
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.node.attestation import NodeAttestation
from quorumkeep.node.backup_api import BackupNodeDeps, backup_router
from quorumkeep.node.backup_keys import keystore_share_source, tls_signer
from quorumkeep.node.backup_registration import RegistrationCache, registration_client
from quorumkeep.node.config import ConfigError, NodeConfig, load_config
from quorumkeep.node.coordinator import Coordinator, CoordinatorSettings, Decommissioned
from quorumkeep.node.identity import IdentityError, NodeIdentity, load_node
from quorumkeep.node.incarnation import begin_incarnation
from quorumkeep.node.key_provider_deal import ProviderOutcome
from quorumkeep.node.key_provider_rotation import Rotation
from quorumkeep.node.key_providers import PeersKeySource
from quorumkeep.node.key_sources import key_source_from_config
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.mesh import Mesh
from quorumkeep.node.metrics import NodeMetrics, record_key_source
from quorumkeep.node.standby_api import standby_router
from quorumkeep.node.storage_key import KeySource
from quorumkeep.node.web import WebServer, create_app
from quorumkeep.wire.backup.statements import Ed25519Signer
from quorumkeep.wire.tls import TLSError

log = logging.getLogger("quorumkeep.node")

DEFAULT_LEDGER_WAIT = 30.0
STOP_TIMEOUT = 10.0
LOG_LEVELS = startup.LOG_LEVELS


def configure_logging(level: str = "INFO") -> None:
    startup.configure_logging(level, startup.LIBRARY_LOGGERS)


def _address_problem(what: str, address: str, exc: OSError) -> StartupError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason = "address already in use"
    return StartupError(f"cannot listen on {what} address {address}: {reason}", "address_in_use")


async def wait_for_ledger(ledger: AsyncLedgerClient, wait: float) -> dict[str, object]:
    """The ledger's status, retrying with backoff for at most ``wait`` seconds."""

    def retrying(exc: LedgerError) -> None:
        log.info("ledger not reachable yet (%s); retrying", exc.code)

    return await startup.ledger_status(ledger, wait, retrying)


async def _load_identity(
    config: NodeConfig,
) -> tuple[NodeIdentity, Keystore, KeySource]:
    source = key_source_from_config(config)
    try:
        identity, keystore = await asyncio.to_thread(load_node, config, source)
    except (KeystoreError, IdentityError) as exc:
        code = getattr(exc, "code", "identity_invalid")
        raise StartupError(str(exc), str(code)) from None
    return identity, keystore, source


class NodeProcess:
    """Everything one node runs, with start and stop in the right order."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        ledger_wait: float = DEFAULT_LEDGER_WAIT,
        settings: CoordinatorSettings | None = None,
    ) -> None:
        self.config = config
        self.ledger_wait = ledger_wait
        settings = settings or CoordinatorSettings()
        if config.exit_on_decommission and not settings.exit_on_decommission:
            settings = dataclasses.replace(settings, exit_on_decommission=True)
        self.settings = settings
        self.metrics = NodeMetrics()
        self.identity: NodeIdentity | None = None
        self.keystore: Keystore | None = None
        self.ledger: AsyncLedgerClient | None = None
        self.mesh: Mesh | None = None
        self.web: WebServer | None = None
        self.coordinator: Coordinator | None = None
        self.attestation: NodeAttestation | None = None
        self._attesting: asyncio.Task[None] | None = None
        self.registration_ledger: AsyncLedgerClient | None = None
        self.registrations: RegistrationCache | None = None
        self.key_source: KeySource | None = None
        self.rotation: Rotation | None = None
        self._rotation_stop = asyncio.Event()
        self._rotation_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = self.config
        self.identity, self.keystore, self.key_source = await _load_identity(config)
        identity = self.identity
        # Before anything could use one: a restored or copied directory may hold
        # presignatures whose nonces were used since (docs/storage.md).
        keystore = self.keystore
        incarnation = await asyncio.to_thread(begin_incarnation, keystore)
        if isinstance(self.key_source, PeersKeySource):
            record_key_source(self.metrics, self.key_source.report.to_json())
        self.ledger = AsyncLedgerClient(config.ledger_url)
        status = await wait_for_ledger(self.ledger, self.ledger_wait)
        host, port = config.p2p_listen_address
        self.mesh = Mesh(identity, host=host, port=port, incarnation=incarnation.announced)
        try:
            await self.mesh.start()
        except OSError as exc:
            raise _address_problem("p2p", config.p2p_listen, exc) from None
        self.coordinator = coordinator = Coordinator(
            config=config,
            identity=identity,
            keystore=self.keystore,
            ledger=self.ledger,
            mesh=self.mesh,
            metrics=self.metrics,
            settings=self.settings,
        )
        self.attestation = self._attestation(config, identity, self.coordinator)
        self.coordinator.attestation = self.attestation
        attestation = self.attestation
        # The backup endpoints' unauthenticated checks read only through their own,
        # bounded client (node/backup_registration.py), never the coordinator's.
        self.registration_ledger = registration_client(config.ledger_url)
        self.registrations = RegistrationCache(config.account, self.registration_ledger.view)
        await self.registrations.start(self.registration_ledger)
        app = create_app(
            status=lambda: {**self._status(), "attestation": attestation.status()},
            metrics=self.metrics,
            snapshot=self.coordinator.metrics_snapshot,
            routers=(
                self._backup_router(identity, self.keystore, self.ledger, self.coordinator),
                standby_router(
                    config.account, coordinator.standby.import_export, lambda: coordinator.ready
                ),
            ),
        )
        web_host, web_port = config.web_listen_address
        self.web = WebServer(identity.tls, web_host, web_port, app)
        try:
            await self.web.start()
        except OSError as exc:
            raise _address_problem("web", config.web_listen, exc) from None
        except TLSError as exc:
            raise StartupError(f"web API cannot use the TLS key: {exc}", exc.code) from None
        self._attesting = asyncio.create_task(self.attestation.run(), name="attestation")
        self._start_rotation(identity)
        log.info(
            "started account=%s tls_public_key=%s p2p=%s web=%s ledger=%s ledger_height=%s",
            config.account,
            identity.tls_public_key.hex(),
            config.p2p_url,
            config.web_url,
            config.ledger_url,
            status.get("height"),
        )

    def _start_rotation(self, identity: NodeIdentity) -> None:
        """peers: re-deal the storage secret whenever a key provider of its deal leaves."""
        source = self.key_source
        if not isinstance(source, PeersKeySource) or source.secret is None:
            return
        assert source.release_signer is not None and self.ledger is not None
        seed = identity.signer_seed
        self.rotation = Rotation(
            account=self.config.account,
            secret=source.secret,
            signer=Ed25519Signer(seed),
            account_signer=AccountSigner(self.config.account, nacl.signing.SigningKey(seed)),
            release_public_key=source.release_signer.public_key,
            ledger=self.ledger,
            on_outcome=self._rotated,
        )
        self._rotation_task = asyncio.create_task(
            self.rotation.run(self._rotation_stop), name="key-provider-rotation"
        )

    def _rotated(self, outcomes: list[ProviderOutcome]) -> None:
        report = dict(self.metrics.key_source or {})
        report.update(
            providers=[o.to_json() for o in outcomes],
            epoch=(report.get("epoch") or 0) + 1,
        )
        record_key_source(self.metrics, report)

    def _status(self) -> dict[str, Any]:
        """The coordinator's status, and where the storage key came from at this start."""
        assert self.coordinator is not None
        body = dict(self.coordinator.status())
        if self.metrics.key_source is not None:
            body["key_source"] = self.metrics.key_source
        return body

    def _attestation(
        self, config: NodeConfig, identity: NodeIdentity, coordinator: Coordinator
    ) -> NodeAttestation:
        """This node's quotes (from node.toml's [attestation]) and their upkeep."""
        try:
            source = quote_source(
                config.attestation or AttestationConfig(), f"quorumkeep-node {__version__}"
            )
        except AttestationUnavailable as exc:
            raise StartupError(f"attestation: {exc}", "attestation_unavailable") from None
        if source is not None:
            log.info("attestation: %r", source)
        return NodeAttestation(
            source,
            account=config.account,
            tls_public_key=identity.tls_public_key,
            signer_public_key=identity.signer_public_key,
            call=coordinator.contract.call,
            on_status=self.metrics.attestation.update,
        )

    def _backup_router(
        self,
        identity: NodeIdentity,
        keystore: Keystore,
        ledger: AsyncLedgerClient,
        coordinator: Coordinator,
    ) -> APIRouter:
        """The backup protocol's endpoints (docs/backup-protocol.md), bound to this node: its
        TLS key signs the answers, the contract is read through the ledger, backups come
        from the keystore and recovered shares go to the coordinator, which concludes."""
        try:
            signer = tls_signer(identity.tls)
        except (TLSError, ValueError) as exc:
            raise StartupError(
                f"the backup endpoints cannot use the TLS key: {exc}", "tls_key_invalid"
            ) from None

        deps = BackupNodeDeps(
            account=self.config.account,
            tls_signer=signer,
            read_view=ledger.view,
            registrations=self.registrations,
            current_shares=keystore_share_source(keystore),
            import_shares=coordinator.migration.import_verified,
            on_backup_served=self.metrics.backup_served,
            ready=lambda: coordinator.ready,
        )
        return backup_router(deps)

    async def stop(self) -> None:
        """Stop everything that was started, each step bounded; never raises."""
        self._rotation_stop.set()
        if self._attesting is not None:
            self._attesting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._attesting
        steps: list[tuple[str, Awaitable[None] | None]] = [
            ("key-provider rotation", self._rotation_task),
            ("coordinator", self.coordinator.close() if self.coordinator else None),
            ("web", self.web.stop() if self.web else None),
            ("mesh", self.mesh.close() if self.mesh else None),
            ("backup registrations", self.registrations.close() if self.registrations else None),
            (
                "registration ledger client",
                self.registration_ledger.aclose() if self.registration_ledger else None,
            ),
            ("ledger client", self.ledger.aclose() if self.ledger else None),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await step
            except Exception as exc:
                log.warning("stopping %s failed: %s", name, type(exc).__name__)
        if self.keystore is not None:
            with contextlib.suppress(Exception):
                self.keystore.close()


async def run_node(
    config: NodeConfig,
    *,
    ledger_wait: float = DEFAULT_LEDGER_WAIT,
    settings: CoordinatorSettings | None = None,
    stop: asyncio.Event | None = None,
    install_signal_handlers: bool = True,
) -> int:
    """Run one node until ``stop`` is set (or SIGTERM/SIGINT); return the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    node = NodeProcess(config, ledger_wait=ledger_wait, settings=settings)
    stopping = asyncio.create_task(stop.wait(), name="node-stop-signal")
    try:
        start = asyncio.create_task(node.start(), name="node-start")
        await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
            log.info("stopped before start-up finished")
            return EXIT_OK
        try:
            start.result()
        except StartupError as exc:
            log.error("startup failed: %s [%s]", exc, exc.code)
            return EXIT_STARTUP
        except (CryptoError, KeystoreError, LedgerError, ConfigError) as exc:
            log.error("startup failed: %s [%s]", exc, getattr(exc, "code", "error"))
            return EXIT_STARTUP
        assert node.coordinator is not None
        running = asyncio.create_task(node.coordinator.run(), name="coordinator")
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            try:
                running.result()
            except Decommissioned as exc:  # only with exit_on_decommission
                log.warning("decommissioned: %s; key shares and presignatures wiped, exiting", exc)
                return EXIT_OK
            except Exception as exc:
                log.error(
                    "node failed: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(10)
                )
                return EXIT_FAILED
            log.error("coordinator stopped unexpectedly")
            return EXIT_FAILED
        log.info("stopping on signal")
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        return EXIT_OK
    finally:
        stopping.cancel()
        await node.stop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("stopped")


def run(
    config_path: Path | str,
    *,
    ledger_wait: float = DEFAULT_LEDGER_WAIT,
    log_level: str = "INFO",
    settings: CoordinatorSettings | None = None,
) -> int:
    """Blocking entry point of ``quorumkeep node run``; returns the process exit code."""
    if log_level.upper() not in LOG_LEVELS:
        print(f"error: log level must be one of {', '.join(LOG_LEVELS)}", file=sys.stderr)
        return EXIT_STARTUP
    configure_logging(log_level)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("startup failed: %s [%s]", exc, exc.code)
        return EXIT_STARTUP
    return asyncio.run(run_node(config, ledger_wait=ledger_wait, settings=settings), debug=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quorumkeep.node.process", description="Run one quorumkeep node."
    )
    parser.add_argument("--config", required=True, help="path of node.toml")
    parser.add_argument("--ledger-wait", type=float, default=DEFAULT_LEDGER_WAIT)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--exit-on-decommission", action="store_true")
    args = parser.parse_args(argv)
    settings = CoordinatorSettings(exit_on_decommission=args.exit_on_decommission)
    return run(
        args.config, ledger_wait=args.ledger_wait, log_level=args.log_level, settings=settings
    )


if __name__ == "__main__":
    sys.exit(main())
