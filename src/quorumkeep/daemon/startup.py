"""Start-up of a long-running process (``node run``, ``backup run``): exit codes, log lines,
and waiting for the ledger, which may come up after the process that needs it."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.net.retry import BackoffPolicy, retry

if TYPE_CHECKING:
    from fastapi import FastAPI

    from quorumkeep.net.server import ServedApp

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STARTUP = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "asyncio")
"""Libraries that would log every connection or request: only from WARNING up."""
STARTUP_BACKOFF = BackoffPolicy(initial=0.1, maximum=2.0, jitter=0.5)


class StartupError(Exception):
    """The process cannot start; the message is the one line the operator reads."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def serve(
    app: FastAPI, listen: str, address: tuple[str, int], *, backlog: int | None = None
) -> ServedApp:
    """Serve ``app`` on ``address`` (``listen`` as the operator wrote it, for the message);
    an address that cannot be bound is ``StartupError`` ``address_in_use``."""
    from quorumkeep.net.server import ServedApp  # the web stack, only for processes that serve

    try:
        return ServedApp(app, *address, backlog=backlog)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {listen}: {exc.strerror or exc}", "address_in_use"
        ) from None


def configure_logging(level: str, quiet: Iterable[str]) -> None:
    """Log lines to stderr as ``time level logger: message``; the ``quiet`` loggers (libraries
    that would log every connection) only from WARNING up."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)


async def ledger_status(
    ledger: AsyncLedgerClient,
    wait: float,
    on_retry: Callable[[LedgerError], None] | None = None,
) -> dict[str, Any]:
    """The ledger's status, retrying with backoff for at most ``wait`` seconds; after that
    :class:`StartupError` ``ledger_unreachable`` naming the URL, the wait and the last error."""

    def report(exc: Exception, _delay: float) -> None:
        if on_retry is not None and isinstance(exc, LedgerError):
            on_retry(exc)

    try:
        return await retry(
            ledger.status,
            policy=STARTUP_BACKOFF,
            retryable=lambda exc: isinstance(exc, LedgerError),
            deadline=time.monotonic() + wait,
            on_retry=report,
        )
    except LedgerError as exc:
        raise StartupError(
            f"ledger at {ledger.base_url} unreachable for {wait:g}s ({exc.code}: {exc.message})",
            "ledger_unreachable",
        ) from None
