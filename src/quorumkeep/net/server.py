"""Listen addresses, bound sockets and uvicorn embedded in a process's own event loop.

- :func:`parse_host_port` reads ``host:port`` or ``[v6-address]:port`` (an IPv6 address is
  always bracketed, so the last colon is never ambiguous).
- :func:`bind_socket` binds through ``getaddrinfo``, so an IPv6 address, an IPv4 address
  and a name bind alike. Binding ourselves makes "address in use" an :class:`OSError` the
  caller reports (uvicorn would call ``sys.exit``) and lets port 0 pick a free port whose
  number the caller can read and announce.
- :class:`EmbeddedServer` is uvicorn without its own signal handling: the host process owns
  SIGTERM/SIGINT and stops the server by setting ``should_exit``.
- :func:`answer_http_errors` answers a request no route takes (unknown path, a stray ``/``,
  wrong method) in the API's error shape with a stable code, not Starlette's ``{"detail"}``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Generator, Mapping

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from quorumkeep.encoding.fields import parse_decimal

MAX_PORT = 65535
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


def parse_host_port(value: str, *, allow_zero: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); port 1..65535 (0 too with
    ``allow_zero``: any free port). ``ValueError`` with a one-line reason otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError("address must be a non-empty 'host:port' string")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {value!r}: expected '[v6-address]:port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad address {value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad address {value!r}: expected 'host:port'")
        if ":" in host:
            raise ValueError(f"bad address {value!r}: write IPv6 addresses as '[addr]:port'")
    lowest = 0 if allow_zero else 1
    try:
        port = parse_decimal(port_text, 5, leading_zeros=True)
    except ValueError:
        port = -1
    if not lowest <= port <= MAX_PORT:
        raise ValueError(f"bad address {value!r}: port must be {lowest}..{MAX_PORT}")
    if any(c.isspace() for c in host):
        raise ValueError(f"bad address {value!r}: host contains whitespace")
    return host, port


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_host_port` (brackets around an IPv6 host)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_socket(host: str, port: int, *, backlog: int | None = None) -> socket.socket:
    """A bound, non-blocking TCP socket (listening if ``backlog`` is given); ``OSError`` if
    the address cannot be resolved or bound. IPv6 and IPv4 hosts alike."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
