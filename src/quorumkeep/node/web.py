"""The node's web API: FastAPI over HTTPS with the node's own TLS certificate.

Endpoints (docs/node.md): ``/health``, ``/status`` (public facts only, never a secret) and
``/metrics`` (Prometheus text). Clients pin the certificate by the ``tls_public_key`` the
contract lists for the node, exactly like mesh peers do; no certificate authority is
involved. The backup protocol's ``/backup/...`` endpoints (:mod:`quorumkeep.node.backup_api`)
come in through ``routers``.

The uvicorn server runs inside the node's event loop. We bind the listening socket
ourselves, so "address in use" surfaces as an :class:`OSError` the caller can report (uvicorn
would call ``sys.exit``), and uvicorn's own signal handling is switched off: the node
process owns SIGTERM/SIGINT and stops the server through :meth:`WebServer.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from quorumkeep.net.address import bind_socket
from quorumkeep.net.http_timeouts import HEADER_TIMEOUT, timeouts
from quorumkeep.net.server import EmbeddedServer, answer_http_errors
from quorumkeep.node.metrics import CONTENT_TYPE_LATEST, MetricsSnapshot, NodeMetrics
from quorumkeep.wire.tls import TLSCredentials

log = logging.getLogger("quorumkeep.node.web")

STOP_TIMEOUT = 5.0


class PeerStatus(BaseModel):
    participant_id: int
    account: str
    url: str
    connected: bool


class MigrationStatus(BaseModel):
    """A migration to this node (docs/node.md): its start height and how far it got."""

    started_height: int = Field(description="block height of its start_node_migration")
    phase: str = Field(
        description="waiting_for_shares (none delivered yet) | concluding (shares verified "
        "and stored; conclude_node_migration until the contract shows it)"
    )
    epoch: int | None = Field(description="epoch of the imported shares, while concluding")


class WarmStandbyStatus(BaseModel):
    """A warm standby's freshness (docs/node.md, "Warm standby")."""

    active: bool = Field(description="the standby took over: it is the participant now")
    held_epoch: int | None = Field(description="newest epoch whose keyset of shares it holds")
    current_epoch: int | None = Field(description="epoch of the keyset in force")
    fresh: bool = Field(description="held_epoch == current_epoch")
    last_import_epoch: int | None
    last_import_age_seconds: float | None


class StandbyPushError(BaseModel):
    code: str
    message: str


class StandbyPushStatus(BaseModel):
    """A primary's pushes to its warm standby."""

    web_url: str | None
    wrapping_key: str | None = Field(description="the standby's wrapping key (hex)")
    pushed_epoch: int | None = Field(description="epoch of the last export the standby took")
    last_push_age_seconds: float | None
    pending: bool = Field(description="a push of the keyset in force is under way or retried")
    error: StandbyPushError | None = Field(description="why the last attempt failed")


class KeyProviderStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    index: int
    ok: bool
    code: str | None
    message: str | None


class KeySourceStatus(BaseModel):
    """Where the storage key came from at this start (``peers``), and each provider's answer
    at the last attempt (or at the last re-deal)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    epoch: int | None
    threshold: int | None
    attempts: int
    seconds: float
    providers: list[KeyProviderStatus]


class NodeStatus(BaseModel):
    """``GET /status``. Everything here is public: ids, states, counts, public keys."""

    model_config = ConfigDict(extra="forbid")

    account: str
    tls_public_key: str = Field(description="hex; the key the contract must list for us")
    signer_public_key: str
    incarnation: str = Field(
        description="This process's incarnation (16 bytes, hex): new at every start; the node "
        "forgot every presignature stored before it (docs/storage.md)."
    )
    role: str = Field(
        description="participant | not_participant | wait_for_migration | waiting | "
        "decommissioned | starting"
    )
    participant_id: int | None
    protocol_state: str
    epoch: int | None = Field(description="epoch of the keyset in force")
    resharing_epoch: int | None = Field(description="epoch being built during a resharing")
    threshold: int | None
    participants: list[int]
    peers: list[PeerStatus]
    connected_peers: list[int]
    presignatures: dict[str, int] = Field(
        description="domain id → presignatures held (owned or as a member)"
    )
    owned_presignatures: dict[str, int] = Field(
        description="'domain/epoch' → usable presignatures this node owns (leads with)"
    )
    keysets: dict[str, list[int]] = Field(description="epoch → domain ids with a key share")
    pending_requests: int
    ledger_height: int
    uptime_seconds: float
    migration: MigrationStatus | None = Field(
        default=None, description="the migration to this node, while one is open or concluding"
    )
    wrapping_public_key: str | None = Field(
        default=None, description="hex X25519 key wrapped exports to this node are sealed to"
    )
    warm_standby: WarmStandbyStatus | None = Field(
        default=None, description="freshness, if this node is a warm standby"
    )
    standby_push: StandbyPushStatus | None = Field(
        default=None, description="pushes to this node's warm standby, if it has one"
    )
    key_source: KeySourceStatus | None = Field(
        default=None,
        description="peers storage-key source: how this start got its key, per provider",
    )
    attestation: dict[str, Any] | None = Field(
        default=None,
        description="this node's attestation in the contract: enforced, "
        "insecure_dev_attestation, kind, tcb_status, measurement_id, expires_at, expires_in, "
        "problem, marked (docs/attestation.md)",
    )


def create_app(
    *,
    status: Callable[[], Mapping[str, Any]],
    metrics: NodeMetrics,
    snapshot: Callable[[], MetricsSnapshot],
    routers: Iterable[APIRouter] = (),
) -> FastAPI:
    app = FastAPI(
        title="quorumkeep node",
        description="Health, status and metrics of one quorumkeep MPC node.",
        version="1",
        redirect_slashes=False,  # a stray "/" is a 404 with its code, not a redirect
    )
    answer_http_errors(app)

    @app.get("/health", summary="Liveness: 200 while the process serves requests")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/status",
        response_model=NodeStatus,
        response_model_exclude_unset=True,
        summary="What this node knows and does",
    )
    async def node_status() -> NodeStatus:
        return NodeStatus.model_validate(dict(status()))

    @app.get("/metrics", summary="Prometheus text exposition", response_class=Response)
    async def node_metrics() -> Response:
        metrics.apply(snapshot())
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


class WebServer:
    """The HTTPS server of one node, run as a task of the node's event loop."""

    def __init__(
        self,
        tls: TLSCredentials,
        host: str,
        port: int,
        app: FastAPI,
        *,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self._tls = tls
        self._header_timeout = header_timeout
        self._host = host
        self._port = port
        self._app = app
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    def _ssl_context(
        self, _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        # The same TLS 1.3-only context the mesh uses, minus client certificates.
        return self._tls.server_context(None, require_client_cert=False)

    async def start(self) -> None:
        """Bind and serve; ``OSError`` if the port is taken, TLSError if the key is unusable."""
        if self._task is not None:
            raise RuntimeError("web server already started")
        sock = bind_socket(self._host, self._port)
        self._port = int(sock.getsockname()[1])
        self._socket = sock
        config = uvicorn.Config(
            self._app,
            ssl_certfile=str(self._tls.certificate_path),
            ssl_keyfile=str(self._tls.private_key_path),
            ssl_keyfile_password=self._tls.password.decode("ascii"),
            ssl_context_factory=self._ssl_context,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            **timeouts(self._header_timeout),
        )
        try:
            config.load()
        except BaseException:
            sock.close()
            raise
        server = EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="web-server")
        async with asyncio.timeout(STOP_TIMEOUT):
            while not server.started:
                if self._task.done():
                    self._task.result()  # re-raise the startup error
                    raise RuntimeError("web server stopped during startup")
                await asyncio.sleep(0.01)
        log.info("web API listening on https://%s:%s", self._host, self._port)

    async def stop(self) -> None:
        """Stop accepting, finish open requests (bounded), close the socket."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        except Exception:
            log.exception("web server failed while stopping")
        finally:
            if self._socket is not None:
                self._socket.close()
            self._server = None
            self._task = None
