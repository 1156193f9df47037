"""The wrapped-export endpoint of the node's web API: ``PUT /standby/wrapped-export``.

Body: one wrapped export (docs/wrapped-export.md), at most 256 KiB. The node opens it with
its wrapping key and checks it against a fresh read of the contract
(:meth:`quorumkeep.node.standby.WarmStandby.import_export`) before storing anything; the
answer is ``{"account", "participant_id", "epoch", "domains", "migration"}`` or a typed
error ``{"error": {"code", "message"}}`` with the status of
:data:`~quorumkeep.wire.wrapped.WRAPPED_ERROR_STATUS`. Its primary pushes here by itself
(:mod:`quorumkeep.node.standby_feed`); ``quorumkeep node import FILE`` sends a file here.

The export authenticates itself (signed by the TLS key the contract lists for the account,
sealed to this node's wrapping key, every share checked against the contract's verifying
shares), so the endpoint asks for no client certificate; replaying an export changes
nothing (the same shares again, or an old epoch: refused).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.node.backup_http import RETRY_AFTER, read_body
from quorumkeep.wire.backup import BackupProtocolError
from quorumkeep.wire.wrapped import PATH_WRAPPED_EXPORT, WrappedExport, WrappedExportError

log = logging.getLogger("quorumkeep.node.standby")

Importer = Callable[[WrappedExport], Awaitable[dict[str, Any]]]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed_export or decryption_failed"},
    401: {"description": "bad_signature"},
    403: {"description": "unknown_source"},
    409: {"description": "not_standby, is_participant, wrong_epoch or wrong_keyset"},
    413: {"description": "body_too_large"},
    421: {"description": "wrong_destination (sealed to another node or for another account)"},
    422: {"description": "shares_mismatch"},
    503: {"description": "contract_unavailable (also while the node starts)"},
}


def standby_router(account: str, import_export: Importer, ready: Callable[[], bool]) -> APIRouter:
    """``PUT /standby/wrapped-export``, bound to one node."""
    refusals = RefusalLog(log)
    router = APIRouter(tags=["standby"])

    def refused(exc: WrappedExportError) -> JSONResponse:
        level = logging.ERROR if exc.status >= 500 else logging.WARNING
        refusals.log(
            level,
            f"wrapped export:{exc.code}",
            "wrapped export refused account=%s code=%s: %s",
            account,
            exc.code,
            exc.message,
        )
        headers = RETRY_AFTER if exc.code == "contract_unavailable" else None
        return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)

    @router.put(
        PATH_WRAPPED_EXPORT,
        summary="Take a wrapped export of this account's shares (warm standby, or a migration "
        "to this node)",
        responses=_RESPONSES,
    )
    async def put_wrapped_export(request: Request) -> JSONResponse:
        if not ready():
            return refused(
                WrappedExportError(
                    "contract_unavailable", "the node has not applied the contract's state yet"
                )
            )
        try:
            body = await read_body(request)
        except BackupProtocolError as exc:
            code = "body_too_large" if exc.code == "body_too_large" else "malformed_export"
            return refused(WrappedExportError(code, exc.message))
        try:
            export = WrappedExport.from_bytes(body)
            answer = await import_export(export)
        except WrappedExportError as exc:
            return refused(exc)
        except Exception as exc:
            log.error("importing a wrapped export failed: %s", type(exc).__name__)
            return refused(
                WrappedExportError(
                    "import_failed", f"the node could not store the shares ({type(exc).__name__})"
                )
            )
        return JSONResponse(answer)

    return router
