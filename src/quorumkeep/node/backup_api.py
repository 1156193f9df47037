"""The node's side of the backup protocol: the ``/backup/...`` endpoints (a FastAPI router).

- ``GET /backup/keyshares`` — the node's current keyset shares, sealed end-to-end to the
  backup service registered in the contract for this node's account.
- ``POST /backup/recovery-session`` then ``PUT /backup/keyshares`` — while a migration to
  this node is open, the account's backup service delivers the shares; they are checked
  against the contract's public key packages before anything is stored, then handed to
  the node (``import_shares``), which concludes the migration.

Everything the router needs from the node comes in as :class:`BackupNodeDeps`, so it can
be mounted in the node's web API and, unchanged, in a test server. Formats, checks and
error codes: docs/backup-protocol.md; the protocol itself lives in
:mod:`quorumkeep.wire.backup`, shared with the backup service.

This module holds the handlers and the router; beside it: the request checks and contract
reads (node/backup_checks.py), the open recovery sessions (node/backup_sessions.py), body
reads and error answers (node/backup_http.py), the OpenAPI description
(node/backup_openapi.py), the registration cache (node/backup_registration.py), and the
node's TLS signer and keystore share source (node/backup_keys.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.node.backup_checks import BackupChecks
from quorumkeep.node.backup_http import RETRY_AFTER, answer, read_body
from quorumkeep.node.backup_keys import SharesSource
from quorumkeep.node.backup_openapi import (
    BACKUP_RESPONSE,
    RECOVERY_ACK,
    RECOVERY_PUSH,
    RECOVERY_SESSION,
    operation,
)
from quorumkeep.node.backup_registration import RegistrationCache
from quorumkeep.node.backup_sessions import RecoverySessions
from quorumkeep.node.calls import ViewReader
from quorumkeep.wire.backup import (
    PATH_KEYSHARES,
    PATH_RECOVERY_SESSION,
    BackupProtocolError,
    RecoveryPush,
    ReplayGuard,
    Signer,
    VerifiedShares,
    make_recovery_ack,
    make_recovery_session,
    open_recovery,
    seal_backup,
    verify_shares,
)

log = logging.getLogger("quorumkeep.node.backup")

ShareImporter = Callable[[VerifiedShares], Awaitable[None]]
"""Stores verified shares and makes the node conclude its migration; raises on failure
(a :class:`BackupProtocolError` is answered with its own code, anything else is
``import_failed``)."""
BackupServedHook = Callable[[int, float], None]
"""Called with (epoch, Unix time in seconds) after every backup served."""


def _ignore_served(_epoch: int, _timestamp: float) -> None:
    return None


def _always_ready() -> bool:
    return True


@dataclass(frozen=True)
class BackupNodeDeps:
    """What the backup endpoints need from the node."""

    account: str
    tls_signer: Signer
    """The node's TLS key (its public half is the contract's ``tls_public_key``)."""
    read_view: ViewReader
    current_shares: SharesSource
    import_shares: ShareImporter
    on_backup_served: BackupServedHook = _ignore_served
    ready: Callable[[], bool] = _always_ready
    """Whether the node applied the contract's first state; until then every endpoint
    answers ``contract_unavailable`` (503) before reading anything."""
    clock: Callable[[], float] = time.time
    random_bytes: RandomBytes = field(default=os.urandom, repr=False)
    max_sessions: int = 16
    replay_capacity: int = 4096
    registrations: RegistrationCache | None = None
    """The registration cache (node/backup_registration.py), kept on a separate ledger
    client; None: one reading through ``read_view`` (rate-limited, no event follower)."""


class BackupEndpoints:
    """The endpoints' handlers and their state: the request checks (replay table,
    registration cache) and the open recovery sessions."""

    def __init__(self, deps: BackupNodeDeps) -> None:
        self.deps = deps
        self.checks = BackupChecks(
            deps.account,
            deps.tls_signer.public_key,
            deps.read_view,
            deps.clock,
            deps.registrations or RegistrationCache(deps.account, deps.read_view),
            ReplayGuard(deps.replay_capacity),
        )
        self.sessions = RecoverySessions(deps.max_sessions)
        self._import_lock = asyncio.Lock()

    # -- GET /backup/keyshares

    async def backup(self, headers: Mapping[str, str]) -> dict[str, Any]:
        hello, registered = await self.checks.authenticate_hello(headers, "backup")
        await self.checks.check_attested(registered)
        participant_id = await self.checks.my_participant_id()
        keyset = await self.checks.keyset()
        if not keyset.domains:
            raise BackupProtocolError("no_shares", "the keyset has no domains yet")
        try:
            shares = list(await self.deps.current_shares(keyset))
        except LookupError:
            shares = []
        except Exception as exc:
            log.error("reading the key shares for a backup failed: %s", type(exc).__name__)
            raise BackupProtocolError(
                "no_shares", f"this node cannot read its shares ({type(exc).__name__})"
            ) from None
        held = {(s.domain_id, s.epoch, s.participant_id) for s in shares}
        wanted = {(d, keyset.epoch, participant_id) for d in keyset.domain_ids}
        if held != wanted or len(shares) != len(wanted):
            raise BackupProtocolError(
                "no_shares",
                f"this node does not hold the shares of every domain of epoch {keyset.epoch}",
            )
        now = self.deps.clock()
        response = seal_backup(
            hello,
            node=self.deps.tls_signer,
            service_encryption_public_key=registered.encryption_public_key,
            keyset=keyset,
            shares=shares,
            now_ms=int(now * 1000),
            random_bytes=self.deps.random_bytes,
        )
        self.deps.on_backup_served(keyset.epoch, now)
        log.info(
            "backup served account=%s epoch=%d domains=%s",
            self.deps.account,
            keyset.epoch,
            list(keyset.domain_ids),
        )
        return response.to_json()

    # -- POST /backup/recovery-session

    async def recovery_session(self, headers: Mapping[str, str]) -> dict[str, Any]:
        hello, _ = await self.checks.authenticate_hello(headers, "recovery")
        _, started_height = await self.checks.open_migration()
        now = self.checks.now_ms()
        self.sessions.prune(now)
        ephemeral = KxKeyPair.generate(self.deps.random_bytes)
        session = make_recovery_session(
            hello,
            node=self.deps.tls_signer,
            node_ephemeral=ephemeral,
            migration_started_height=started_height,
            now_ms=now,
            random_bytes=self.deps.random_bytes,
        )
        self.sessions.open(
            session.session_id,
            ephemeral,
            hello.service_identity_public_key,
            hello.service_ephemeral_public_key,
            started_height,
            session.expires_at_ms,
        )
        log.info("recovery session opened account=%s", self.deps.account)
        return session.to_json()

    # -- PUT /backup/keyshares

    async def recover(self, body: bytes) -> dict[str, Any]:
        push = RecoveryPush.from_body(body)
        registered, now = await self.checks.authenticate(push)
        session = self.sessions.take(push, now)
        participant_id, started_height = await self.checks.open_migration()
        if started_height != session.migration_started_height:
            raise BackupProtocolError(
                "no_open_migration", "the migration this session was opened for was replaced"
            )
        keyset = await self.checks.keyset()
        if push.keyset.epoch != keyset.epoch:
            raise BackupProtocolError(
                "wrong_epoch",
                f"the shares are for epoch {push.keyset.epoch}, the contract is at {keyset.epoch}",
            )
        if push.keyset != keyset:
            raise BackupProtocolError(
                "wrong_keyset", "the shares are for another keyset than the contract's"
            )
        shares = open_recovery(
            push,
            node_ephemeral=session.node_ephemeral,
            service_encryption_public_key=registered.encryption_public_key,
        )
        packages = await self.checks.packages(keyset)
        verified = verify_shares(self.deps.account, participant_id, keyset, shares, packages)
        async with self._import_lock:
            try:
                await self.deps.import_shares(verified)
            except BackupProtocolError:
                raise  # the node's own re-check against a fresh contract state refused them
            except Exception as exc:
                log.error(
                    "importing recovered shares failed account=%s epoch=%d: %s",
                    self.deps.account,
                    keyset.epoch,
                    type(exc).__name__,
                )
                raise BackupProtocolError(
                    "import_failed", f"the node could not store the shares ({type(exc).__name__})"
                ) from None
        log.info(
            "recovered shares imported account=%s epoch=%d domains=%s",
            self.deps.account,
            keyset.epoch,
            list(keyset.domain_ids),
        )
        return make_recovery_ack(push, node=self.deps.tls_signer).to_json()


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed_request, stale_timestamp or decryption_failed"},
    401: {"description": "bad_signature"},
    403: {"description": "unregistered_caller or service_not_attested"},
    404: {"description": "no_shares or unknown_session"},
    409: {"description": "replay, wrong_epoch, wrong_keyset, no_open_migration or not_participant"},
    413: {"description": "body_too_large"},
    421: {"description": "wrong_node"},
    422: {"description": "shares_mismatch"},
    429: {"description": "too_many_requests"},
    503: {"description": "contract_unavailable (also while the node starts)"},
}


def backup_router(deps: BackupNodeDeps) -> APIRouter:
    """The ``/backup`` endpoints, bound to one node's dependencies."""
    endpoints = BackupEndpoints(deps)
    refusals = RefusalLog(log)
    router = APIRouter(tags=["backup"])

    def not_ready(what: str) -> JSONResponse | None:
        if deps.ready():
            return None
        refusal = BackupProtocolError(
            "contract_unavailable", "the node has not applied the contract's state yet"
        )
        log.info("%s refused account=%s code=%s: starting", what, deps.account, refusal.code)
        return JSONResponse(refusal.to_json(), status_code=refusal.status, headers=RETRY_AFTER)

    @router.get(
        PATH_KEYSHARES,
        summary="The node's current key shares, sealed to its registered backup service",
        openapi_extra=operation("backup", None, BACKUP_RESPONSE, _ERROR_RESPONSES),
    )
    async def get_keyshares(request: Request) -> JSONResponse:
        if (refused := not_ready("backup")) is not None:
            return refused
        return await answer(
            refusals, deps.account, "backup", lambda: endpoints.backup(request.headers)
        )

    @router.post(
        PATH_RECOVERY_SESSION,
        summary="Open a recovery session (only while a migration to this node is open)",
        openapi_extra=operation("recovery", None, RECOVERY_SESSION, _ERROR_RESPONSES),
    )
    async def post_recovery_session(request: Request) -> JSONResponse:
        if (refused := not_ready("recovery session")) is not None:
            return refused
        return await answer(
            refusals,
            deps.account,
            "recovery session",
            lambda: endpoints.recovery_session(request.headers),
        )

    @router.put(
        PATH_KEYSHARES,
        summary="Deliver the shares of a migration to this node (sealed to a session)",
        openapi_extra=operation(None, RECOVERY_PUSH, RECOVERY_ACK, _ERROR_RESPONSES),
    )
    async def put_keyshares(request: Request) -> JSONResponse:
        if (refused := not_ready("recovery")) is not None:
            return refused

        async def recover() -> dict[str, Any]:
            return await endpoints.recover(await read_body(request))

        return await answer(refusals, deps.account, "recovery", recover)

    return router
