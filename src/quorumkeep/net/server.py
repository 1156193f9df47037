"""uvicorn embedded in a process's own event loop.

- :class:`EmbeddedServer` is uvicorn without its own signal handling: the host process owns
  SIGTERM/SIGINT and stops the server by setting ``should_exit``. Its stop waits for the
  requests in flight, not for idle TLS clients to answer the close (below).
- :class:`ServedApp` serves an app over plain HTTP from a socket this process binds (IPv6 or
  IPv4 alike, net/address.py) until it is stopped: a bind failure is an ``OSError`` for the
  caller to report, and the stop is bounded.
- :func:`answer_http_errors` answers a request no route takes (unknown path, a stray ``/``,
  wrong method) in the API's error shape with a stable code, not Starlette's ``{"detail"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator, Mapping

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from quorumkeep.net.address import bind_socket
from quorumkeep.net.http_timeouts import timeouts

SERVICE_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
"""The routing errors' codes of the node, backup service and key provider APIs (the ledger's
are its own: docs/ledger.md)."""


def answer_http_errors(
    app: FastAPI, codes: Mapping[int, str] = SERVICE_HTTP_CODES, other: str = "malformed_request"
) -> None:
    """Answer Starlette's routing errors as ``{"error": {"code", "message"}}`` with the code
    ``codes`` gives the status (``other`` for any status it does not list); a 405 keeps its
    ``Allow`` header."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = codes.get(exc.status_code, other)
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=exc.headers,
        )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def _wait_tasks_to_complete(self) -> None:
        """uvicorn's graceful wait (bounded by ``timeout_graceful_shutdown``), except for
        connections with nothing left to do. uvicorn closes each idle connection at shutdown,
        but a TLS close then waits for the peer's close_notify, which an idle keep-alive
        client (an HTTP client's pool) never reads: every stop of a TLS server waited out the
        whole graceful timeout. Here the requests in flight finish first; then a connection
        whose responses are all written (nothing buffered) is aborted."""
        while self.server_state.tasks and not self.force_exit:
            await asyncio.sleep(0.05)
        while self.server_state.connections and not self.force_exit:
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None and transport.get_write_buffer_size() == 0:
                    transport.abort()
            await asyncio.sleep(0.05)
        await super()._wait_tasks_to_complete()


class ServedApp:
    """``app`` served in the running event loop from ``host:port`` until :meth:`stop`.

    Binding happens here, before anything is served: an address in use raises ``OSError``
    (uvicorn would exit the process instead). No lifespan events, no access log, uvicorn's
    logging left to the process (daemon/startup.py), the idle and header timeouts of
    net/http_timeouts.py."""

    def __init__(self, app: FastAPI, host: str, port: int, *, backlog: int | None = None) -> None:
        self.socket = bind_socket(host, port, backlog=backlog)
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, **timeouts()
        )
        self.server = EmbeddedServer(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.socket]))

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (bounded by ``timeout`` seconds) and close the socket."""
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await self.task
        self.socket.close()
