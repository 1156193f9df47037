"""The ``backup run`` process: configuration, start-up, the status server, clean stop.

:func:`run_service` loads ``backup.toml``, unlocks the sealed identity and store, waits for
the ledger, serves ``/health``, ``/status`` and ``/metrics`` when ``listen`` is set, and runs
the :class:`~quorumkeep.backup.service.BackupService` until SIGTERM or SIGINT.

With ``key_provider`` set in ``backup.toml``, the same process also runs that key provider
(:func:`quorumkeep.provider.process.run_provider`, its own keys, store, passphrase source and
port): the two stop together, and if either cannot start or fails, the process does.

Exit codes: 0 stopped by a signal, 1 failed while running, 2 could not start. Log lines
never hold a share, a key or the passphrase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response

from quorumkeep.backup.attestation import backup_attester
from quorumkeep.backup.config import BackupConfig, load_config
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.backup.identity import read_public_identity, unlock
from quorumkeep.backup.metrics import CONTENT_TYPE_LATEST
from quorumkeep.backup.service import BackupService, ServiceSettings
from quorumkeep.backup.store import BackupStore
from quorumkeep.daemon import startup
from quorumkeep.daemon.attestation import AttestationUnavailable
from quorumkeep.daemon.errors import error_message
from quorumkeep.daemon.startup import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, StartupError
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.net.server import ServedApp, answer_http_errors
from quorumkeep.provider.config import ProviderConfig
from quorumkeep.provider.config import load_config as load_provider_config
from quorumkeep.provider.errors import ProviderError
from quorumkeep.provider.process import run_provider

log = logging.getLogger("quorumkeep.backup")


def create_status_app(service: BackupService) -> FastAPI:
    app = FastAPI(title="quorumkeep backup service", version="1", redirect_slashes=False)
    answer_http_errors(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return service.status()

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        service.update_freshness_metrics()  # ages as of this scrape
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def configure_logging(level: str = "INFO") -> None:
    startup.configure_logging(level, startup.LIBRARY_LOGGERS)


async def run_backup_service(
    config: BackupConfig,
    *,
    stop: asyncio.Event | None = None,
    ledger_wait: float = 30.0,
    install_signal_handlers: bool = True,
) -> int:
    stop = stop or asyncio.Event()
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    store: BackupStore | None = None
    ledger: AsyncLedgerClient | None = None
    served: ServedApp | None = None
    provider_task: asyncio.Task[int] | None = None
    try:
        provider_config: ProviderConfig | None = None
        if config.key_provider is not None:
            try:
                provider_config = load_provider_config(config.key_provider)
            except ProviderError as exc:
                raise StartupError(f"key_provider: {exc.message}", exc.code) from None
        try:
            passphrase = config.read_passphrase()
            public = read_public_identity(config.dir)
            identity, key = await asyncio.to_thread(unlock, config.dir, passphrase, config.account)
            store = BackupStore.open(config.dir, config.account, public.identity_public_key, key)
        except BackupServiceError as exc:
            raise StartupError(exc.message, exc.code) from None
        try:
            attester = backup_attester(config.attestation, identity)
        except AttestationUnavailable as exc:
            raise StartupError(f"attestation: {exc}", "attestation_unavailable") from None
        ledger = AsyncLedgerClient(config.ledger_url, timeout=config.request_timeout + 30.0)
        status = await startup.ledger_status(ledger, ledger_wait)
        service = BackupService(
            identity=identity,
            store=store,
            ledger=ledger,
            settings=ServiceSettings(
                max_backoff=config.max_backoff, request_timeout=config.request_timeout
            ),
            attester=attester,
        )
        address = config.listen_address
        if address is not None and config.listen is not None:  # the address is parsed from it
            served = startup.serve(create_status_app(service), config.listen, address)
        log.info(
            "started account=%s identity_public_key=%s ledger=%s ledger_height=%s listen=%s "
            "backups_held=%d",
            config.account,
            identity.signer.public_key.hex(),
            config.ledger_url,
            status.get("height"),
            config.listen,
            len(store.records()),
        )
        if provider_config is not None:
            provider_task = asyncio.create_task(
                run_provider(
                    provider_config,
                    stop=stop,
                    ledger_wait=ledger_wait,
                    install_signal_handlers=False,
                ),
                name="key-provider",
            )
            provider_task.add_done_callback(lambda _task: stop.set())
        try:
            await service.run(stop, int(status["height"]))
        except Exception as exc:
            log.error("failed: %s: %s", type(exc).__name__, error_message(exc))
            return EXIT_FAILED
        if provider_task is not None:
            code = await provider_task
            if code != EXIT_OK:
                log.error("the key provider in this process stopped (exit %d)", code)
                return code
        log.info("stopped")
        return EXIT_OK
    except StartupError as exc:
        log.error("cannot start (%s): %s", exc.code, exc)
        return EXIT_STARTUP
    finally:
        if provider_task is not None and not provider_task.done():
            stop.set()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await provider_task
        if served is not None:
            await served.stop()
        if ledger is not None:
            await ledger.aclose()
        if store is not None:
            store.close()


def run_service(config_path: Path | str, *, log_level: str = "INFO") -> int:
    configure_logging(log_level)
    try:
        config = load_config(config_path)
    except BackupServiceError as exc:
        log.error("cannot start (%s): %s", exc.code, exc.message)
        return EXIT_STARTUP
    return asyncio.run(run_backup_service(config))
