"""uvicorn embedded in a process's own event loop.

- :class:`EmbeddedServer` is uvicorn without its own signal handling: the host process owns
  SIGTERM/SIGINT and stops the server by setting ``should_exit``.
- :func:`answer_http_errors` answers a request no route takes (unknown path, a stray ``/``,
  wrong method) in the API's error shape with a stable code, not Starlette's ``{"detail"}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
