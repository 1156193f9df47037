"""HTTP connection timeouts for every uvicorn server of the project: the ledger's API, and
(importing it from here, the lowest layer that serves HTTP) the node's web API and the backup
service's status port.

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``), but nothing bounds a connection that never completes a request:
one that sends nothing after connecting, or that dribbles its request head a byte at a time
(every byte cancels the keep-alive timer). Each such connection holds a socket and a protocol
object for as long as the client likes. :func:`timeouts` gives uvicorn an HTTP protocol with
a **header deadline**: from the moment the connection is made, and again after each response,
the next request's head (request line and headers) must be complete within
``header_timeout`` seconds, however the bytes arrive; otherwise the connection is closed.
Bodies are the application's to bound (each endpoint limits their size).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to complete each request head."""
IDLE_TIMEOUT = 5.0
"""Seconds a keep-alive connection may stay idle after a response (uvicorn's default)."""


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (module doc)."""

    header_timeout = HEADER_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the request head is complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def timeouts(
    header_timeout: float = HEADER_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: the header deadline and the idle timeout."""
    protocol = type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout}
    )
    return {"http": protocol, "timeout_keep_alive": idle_timeout}
