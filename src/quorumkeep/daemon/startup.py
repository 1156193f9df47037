"""Start-up of a long-running process (``node run``, ``backup run``): exit codes, log lines,
and waiting for the ledger, which may come up after the process that needs it."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STARTUP = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIRST_RETRY = 0.1
_LONGEST_RETRY = 2.0


class StartupError(Exception):
    """The process cannot start; the message is the one line the operator reads."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


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
    the last :class:`LedgerError` propagates."""
    deadline = time.monotonic() + wait
    delay = _FIRST_RETRY
    while True:
        try:
            return await ledger.status()
        except LedgerError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            if on_retry is not None:
                on_retry(exc)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _LONGEST_RETRY)
