"""The HTTP side of the node's backup-protocol endpoints: bounded request bodies and typed answers.

A body is read up to ``MAX_BODY_BYTES`` (``body_too_large`` beyond, checked on
``Content-Length`` and while reading); a handler's refusal becomes the protocol's error answer
``{"error": {"code", "message"}}`` with its status (docs/backup-protocol.md §9), logged at a
bounded rate. The wrapped-export endpoint (node/standby_api.py) reads its body the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.encoding.fields import parse_decimal
from quorumkeep.wire.backup import MAX_BODY_BYTES, BackupProtocolError

RETRY_AFTER = {"Retry-After": "1"}
"""Sent with the 503 of a node that has not applied the contract's first state yet."""


def _error(refusals: RefusalLog, exc: BackupProtocolError, account: str, what: str) -> JSONResponse:
    # Anyone who reaches the port can provoke a refusal: at most 10 lines a minute per kind.
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    refusals.log(
        level,
        f"{what}:{exc.code}",
        "%s refused account=%s code=%s: %s",
        what,
        account,
        exc.code,
        exc.message,
    )
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def answer(
    refusals: RefusalLog,
    account: str,
    what: str,
    handle: Callable[[], Awaitable[dict[str, Any]]],
) -> JSONResponse:
    """The handler's JSON, or its refusal as the protocol's typed error answer."""
    try:
        return JSONResponse(await handle())
    except BackupProtocolError as exc:
        return _error(refusals, exc, account, what)


async def read_body(request: Request) -> bytes:
    """A request body of at most ``MAX_BODY_BYTES`` (``body_too_large`` otherwise)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = parse_decimal(length, 20, leading_zeros=True)
        except ValueError:
            raise BackupProtocolError(
                "malformed_request", "content-length: expected a byte count"
            ) from None
        if declared > MAX_BODY_BYTES:
            raise BackupProtocolError(
                "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes"
            )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BackupProtocolError(
                "body_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes"
            )
    return bytes(body)
