"""The ``provider run`` process: the HTTP endpoints, start-up and clean stop.

:func:`create_app` answers ``/health`` and the protocol's four endpoints (deposit, challenge,
release, status; docs/key-provider-protocol.md) with the decisions of
:class:`~quorumkeep.provider.service.ProviderService`; a refusal is the protocol's error body
with its HTTP status.
:func:`run_provider` unlocks the sealed identity and piece store, waits for the ledger, binds
``listen`` and runs until SIGTERM or SIGINT (the backup service's process runs it beside its
own when ``backup.toml`` names a ``key_provider``).

Exit codes of :func:`run_service`: 0 stopped by a signal, 1 failed while running, 2 could
not start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from quorumkeep.daemon import startup
from quorumkeep.daemon.errors import error_code, error_message
from quorumkeep.daemon.service_identity import KEY_PROVIDER_IDENTITY, read_public_identity, unlock
from quorumkeep.daemon.startup import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, StartupError
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.net.server import ServedApp, answer_http_errors
from quorumkeep.provider.config import ProviderConfig, load_config
from quorumkeep.provider.errors import ProviderError
from quorumkeep.provider.service import MAX_BODY_BYTES, ProviderService
from quorumkeep.provider.store import PieceStore
from quorumkeep.wire.key_provider import (
    PATH_CHALLENGE,
    PATH_DEPOSIT,
    PATH_RELEASE,
    PATH_STATUS,
    KeyProviderError,
)

log = logging.getLogger("quorumkeep.provider")


def create_app(service: ProviderService) -> FastAPI:
    app = FastAPI(title="quorumkeep key provider", version="1", redirect_slashes=False)
    answer_http_errors(app)

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise KeyProviderError("malformed_request", "the body is too large")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise KeyProviderError("malformed_request", "the body must be application/json")
        try:
            return json.loads(raw)
        except ValueError:
            raise KeyProviderError("malformed_request", "the body is not JSON") from None

    def refused(exc: KeyProviderError, what: str) -> JSONResponse:
        service.refuse(exc, what)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(PATH_STATUS)
    async def status() -> dict[str, Any]:
        return await asyncio.to_thread(service.status)

    @app.post(PATH_DEPOSIT, response_model=None)
    async def deposit(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            return await service.deposit(await body_of(request))
        except KeyProviderError as exc:
            return refused(exc, "deposit")

    @app.post(PATH_CHALLENGE, response_model=None)
    async def challenge(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            return service.challenge(await body_of(request))
        except KeyProviderError as exc:
            return refused(exc, "challenge")

    @app.post(PATH_RELEASE, response_model=None)
    async def release(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            return await service.release(await body_of(request))
        except KeyProviderError as exc:
            return refused(exc, "release")

    return app


def configure_logging(level: str = "INFO") -> None:
    startup.configure_logging(level, startup.LIBRARY_LOGGERS)


async def run_provider(
    config: ProviderConfig,
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
    store: PieceStore | None = None
    ledger: AsyncLedgerClient | None = None
    served: ServedApp | None = None
    try:
        try:
            passphrase = config.read_passphrase()
            public = read_public_identity(config.dir, KEY_PROVIDER_IDENTITY)
            identity, key = await asyncio.to_thread(
                unlock, config.dir, passphrase, config.account, KEY_PROVIDER_IDENTITY
            )
            store = PieceStore.open(config.dir, config.account, public.identity_public_key, key)
        except ProviderError as exc:
            raise StartupError(exc.message, exc.code) from None
        except Exception as exc:  # ServiceIdentityError and friends carry a code too
            raise StartupError(error_message(exc), error_code(exc)) from None
        ledger = AsyncLedgerClient(config.ledger_url, timeout=config.request_timeout + 30.0)
        status = await startup.ledger_status(ledger, ledger_wait)
        service = ProviderService(
            identity=identity,
            store=store,
            ledger=ledger,
            releases_per_minute=config.releases_per_minute,
            require_attestation=config.require_attestation,
        )
        served = startup.serve(
            create_app(service), config.listen, config.listen_address, backlog=128
        )
        log.info(
            "started account=%s identity_public_key=%s ledger=%s ledger_height=%s listen=%s "
            "pieces_held=%d",
            config.account,
            identity.signer.public_key.hex(),
            config.ledger_url,
            status.get("height"),
            config.listen,
            len(store.held()),
        )
        try:
            await service.run(stop, config.poll_interval)
        except Exception as exc:
            log.error("failed: %s: %s", type(exc).__name__, error_message(exc))
            return EXIT_FAILED
        log.info("stopped")
        return EXIT_OK
    except StartupError as exc:
        log.error("cannot start (%s): %s", exc.code, exc)
        return EXIT_STARTUP
    finally:
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
    except ProviderError as exc:
        log.error("cannot start (%s): %s", exc.code, exc.message)
        return EXIT_STARTUP
    return asyncio.run(run_provider(config))
