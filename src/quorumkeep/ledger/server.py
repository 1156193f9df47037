"""The ledger's HTTP API (FastAPI) and the uvicorn runner behind `quorumkeep ledger serve`.

Every refusal is ``4xx {"error": {"code", "message"}}`` and changes nothing; a transaction
the contract rejects is *not* a refusal: it is included in a block (its nonce is used) and
answered ``200`` with ``status: "failure"`` and the contract's error code.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from quorumkeep.contract import ContractError
from quorumkeep.ledger import api_models as m
from quorumkeep.ledger.blocks import Block
from quorumkeep.ledger.canonical import NotCanonical, check_ijson, parse_json
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.event_filter import MAX_FILTER_KINDS, MAX_KIND_LENGTH, EventFilter
from quorumkeep.ledger.node import DEFAULT_IDLE_BLOCK_MS, LedgerNode
from quorumkeep.ledger.snapshot import DEFAULT_SNAPSHOT_EVERY_BLOCKS
from quorumkeep.ledger.transaction import SignedTransaction, check_account, decode_hex
from quorumkeep.net.address import bind_socket, format_address
from quorumkeep.net.http_timeouts import timeouts
from quorumkeep.net.server import answer_http_errors

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
"""A `submit_recovery_part` transaction carries a part of about 53 KB (RSA-3072), 106 KB as
hex, 141 KB at RSA-4096: the largest body any contract call needs."""
MAX_POLL_SECONDS = 60.0
_KIND = f"[a-z0-9_]{{1,{MAX_KIND_LENGTH}}}"
KIND_LIST_PATTERN = f"^{_KIND}(,{_KIND}){{0,{MAX_FILTER_KINDS - 1}}}$"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": m.ErrorResponse, "description": "refused; nothing changed"},
}


def _error(code: str, message: str) -> JSONResponse:
    exc = LedgerError(code, message)
    return JSONResponse(exc.to_json(), status_code=exc.status)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before the app reads them.

    Reads the whole (small) body here, so a chunked upload without Content-Length is
    counted too, and hands the app a replay of it.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _error("BodyTooLarge", f"request body exceeds {self.limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        await too_large(scope, receive, send)
                        return
                except ValueError:
                    await _error("MalformedRequest", "bad Content-Length")(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _json_body(request: Request) -> Any:
    # A body must say it is JSON: a browser can send text/plain (and form encodings)
    # cross-origin without a preflight, so accepting them would let any web page post here.
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise LedgerError(
            "UnsupportedMediaType", "the body must be sent as Content-Type: application/json"
        )
    raw = await request.body()
    try:
        return parse_json(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LedgerError("MalformedRequest", f"body is not valid JSON: {reason}") from None


def create_app(node: LedgerNode) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(
        title="quorumkeep ledger",
        version="1",
        description="Hosts the quorumkeep MPC contract. Formats: docs/ledger.md.",
        lifespan=lifespan,
        redirect_slashes=False,  # a stray "/" is a 404 with its code, not a redirect
    )

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return _error("InvalidRequest", "; ".join(parts) or "invalid request")

    answer_http_errors(
        app, {404: "NotFound", 405: "HttpMethodNotAllowed", 413: "BodyTooLarge"}, "InvalidRequest"
    )

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback, answered in the usual shape.
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return _error("InternalError", f"the ledger failed ({type(exc).__name__}); see its log")

    @app.post(
        "/v1/transactions",
        response_model=m.ReceiptResponse,
        responses=_ERRORS,
        summary="Submit a signed transaction and wait until its block is durable",
    )
    async def submit(request: Request) -> JSONResponse:
        body = await _json_body(request)
        signed = SignedTransaction.from_json(body)
        receipt = await node.submit(signed)
        return JSONResponse(receipt.to_json())

    @app.post(
        "/v1/view",
        response_model=m.ViewResponse,
        responses=_ERRORS,
        summary="Call a contract view on the last committed state",
    )
    async def view(request: Request) -> JSONResponse:
        body = await _json_body(request)
        if (
            not isinstance(body, dict)
            or "method" not in body
            or not body.keys()
            <= {
                "method",
                "args",
            }
        ):
            raise LedgerError("InvalidRequest", 'body must be {"method": str, "args": object}')
        method, args = body["method"], body.get("args", {})
        if not isinstance(method, str) or not isinstance(args, dict):
            raise LedgerError("InvalidRequest", "method must be a string and args an object")
        try:
            check_ijson(args, where="args")
        except NotCanonical as exc:
            raise LedgerError("InvalidRequest", str(exc)) from None
        state = await node.committed()
        try:
            value = state.contract.view(method, args)
        except ContractError as exc:
            raise LedgerError(exc.code, " ".join(str(exc).split()), status=400) from None
        return JSONResponse({"value": value, "block_height": state.height})

    @app.get(
        "/v1/accounts/{account}",
        response_model=m.AccountResponse,
        responses=_ERRORS,
        summary="An account's access keys and their nonces",
    )
    async def account(account: str = PathParam(pattern=m.ACCOUNT)) -> JSONResponse:
        try:
            check_account(account, "account")
        except LedgerError as exc:
            raise LedgerError("InvalidRequest", exc.message) from None
        state = await node.committed()
        keys = state.accounts.keys_of(account)
        return JSONResponse(
            {
                "account": account,
                "block_height": state.height,
                "keys": [
                    {"public_key": pk.hex(), **key.to_json()} for pk, key in sorted(keys.items())
                ],
            }
        )

    @app.get(
        "/v1/blocks/{height}",
        responses=_ERRORS,
        summary="A committed block, with its hash (format: docs/ledger.md)",
    )
    async def block(height: int = PathParam(ge=0, le=m.MAX_HEIGHT)) -> JSONResponse:
        body = await node.block_body(height)
        if body is None:
            raise LedgerError("BlockNotFound", f"no block at height {height}")
        return JSONResponse(Block.from_body(body).to_json())

    @app.get(
        "/v1/transactions/{tx_hash}",
        response_model=m.TransactionResponse,
        responses=_ERRORS,
        summary="An included transaction and its outcome",
    )
    async def transaction(tx_hash: str = PathParam(pattern=m.HEX32)) -> JSONResponse:
        try:
            raw = decode_hex(tx_hash, 32, "tx_hash")
        except LedgerError as exc:
            raise LedgerError("InvalidRequest", exc.message) from None
        height = await node.transaction_height(raw)
        body = None if height is None else await node.block_body(height)
        if body is not None:
            for included in Block.from_body(body).transactions:
                if included.signed.hash == raw:
                    return JSONResponse(
                        {
                            "tx_hash": tx_hash,
                            "block_height": height,
                            **included.signed.to_json(),
                            "outcome": included.outcome.to_json(),
                        }
                    )
        raise LedgerError("TransactionNotFound", f"no included transaction {tx_hash}")

    @app.get(
        "/v1/events",
        response_model=m.EventsResponse,
        responses=_ERRORS,
        summary="Events at heights above `since`; waits up to `timeout` s for the first one",
    )
    async def events(
        request: Request,
        since: int = Query(-1, ge=-1, description="last height already seen (-1: all)"),
        timeout: float = Query(30.0, ge=0.0, le=MAX_POLL_SECONDS),
        # EventFilter.parse enforces the kinds' rule with a message naming the broken part
        # (empty kind, too many, too long, bad characters); openapi() states it as a pattern.
        kinds: str | None = Query(
            None,
            description=f"only events of these kinds: comma-separated, 1 to {MAX_FILTER_KINDS} "
            f"kinds of 1 to {MAX_KIND_LENGTH} characters [a-z0-9_] (not with exclude_kinds)",
        ),
        exclude_kinds: str | None = Query(
            None,
            description="all events except these kinds (same format as kinds)",
        ),
    ) -> JSONResponse:
        # The declared parameters document them; the raw lists also catch a repeated one.
        query = request.query_params
        event_filter = EventFilter.parse(query.getlist("kinds"), query.getlist("exclude_kinds"))
        found, cursor = await node.events_since(since, timeout, event_filter=event_filter)
        return JSONResponse({"events": found, "next": cursor})

    @app.get("/v1/status", response_model=m.StatusResponse, summary="Chain id and head")
    async def status() -> JSONResponse:
        if node.failed is not None:
            raise LedgerError("LedgerUnavailable", node.failed)
        return JSONResponse(
            {
                "chain_id": node.state.chain_id.hex(),
                "height": node.committed_height,
                "head_hash": node.committed_hash.hex(),
                "timestamp_ms": node.committed_timestamp_ms,
                "tx_validity_blocks": node.state.tx_validity_blocks,
                "idle_block_ms": node.idle_block_ms,
                "pending_transactions": node.pending_count,
            }
        )

    @app.get("/health", response_model=m.HealthResponse, summary="Liveness")
    async def health() -> JSONResponse:
        if node.failed is not None:
            return _error("LedgerUnavailable", node.failed)
        return JSONResponse({"status": "ok", "height": node.committed_height})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for path, model in m.REQUEST_MODELS.items():
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
                schema["paths"][path]["post"]["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                        }
                    },
                }
            for parameter in schema["paths"]["/v1/events"]["get"]["parameters"]:
                if parameter["name"] in ("kinds", "exclude_kinds"):
                    parameter["schema"] = {"type": "string", "pattern": KIND_LIST_PATTERN}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit)
    return app


class ListenError(Exception):
    """The HTTP address cannot be bound (in use, not local, no permission)."""


def _bind(host: str, port: int) -> socket.socket:
    try:
        return bind_socket(host, port, backlog=2048)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, node: LedgerNode) -> None:
        super().__init__(config)
        self.node = node

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.node.begin_shutdown()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_server(
    data_dir: Path,
    host: str,
    port: int,
    *,
    idle_block_ms: int = DEFAULT_IDLE_BLOCK_MS,
    snapshot_every_blocks: int = DEFAULT_SNAPSHOT_EVERY_BLOCKS,
    etcd: list[str] | None = None,
    etcd_prefix: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Open (verify, replay) the ledger in ``data_dir`` and serve it until a signal.

    Raises LedgerCorrupted / StorageError / ListenError before serving anything; returns the
    exit status (0 after a requested stop, 1 if the ledger had to stop itself). Port 0
    picks a free port; the announcement names the real one.
    """
    node: LedgerNode
    if etcd:
        from quorumkeep.ledger.replicated import DEFAULT_PREFIX, EtcdLedgerNode

        replica = EtcdLedgerNode(
            data_dir,
            etcd,
            prefix=etcd_prefix or DEFAULT_PREFIX,
            idle_block_ms=idle_block_ms,
            snapshot_every_blocks=snapshot_every_blocks,
        )
        node = replica
    else:
        node = LedgerNode(
            data_dir, idle_block_ms=idle_block_ms, snapshot_every_blocks=snapshot_every_blocks
        )
    try:
        sock = _bind(host, port)
    except ListenError:
        node.close_unstarted()
        raise
    if etcd:
        bound_host, bound_port = sock.getsockname()[:2]
        replica.advertise_url = f"http://{_url_host(bound_host)}:{bound_port}"
    app = create_app(node)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        # long-poll clients reuse their connection: 30 s idle; every request head must be
        # complete within 10 s of the connection or of the previous response
        **timeouts(idle_timeout=30),
    )
    server = _Server(config, node)

    def fatal(_: str) -> None:
        server.should_exit = True

    node.on_fatal = fatal
    if announce is not None:
        bound_host, bound_port = sock.getsockname()[:2]
        announce(
            f"ledger {node.state.chain_id.hex()[:16]}… at height {node.state.height}, "
            f"listening on http://{format_address(bound_host, bound_port)}"
        )
    # uvicorn handles SIGINT/SIGTERM while serving and re-raises them once it has shut down
    # gracefully; these handlers make that re-raise a no-op, so a requested stop exits 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if not node.started:  # the app never started: release the store ourselves
            node.close_unstarted()
    if node.failed is not None:
        return 1
    return 0 if server.started else 1
