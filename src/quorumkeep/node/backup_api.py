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
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.encoding.fields import parse_decimal
from quorumkeep.node.backup_openapi import (
    BACKUP_RESPONSE,
    RECOVERY_ACK,
    RECOVERY_PUSH,
    RECOVERY_SESSION,
    operation,
)
from quorumkeep.node.backup_registration import (
    Registration,
    RegistrationCache,
    registration_from_json,
)
from quorumkeep.node.calls import ViewReader
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.shares import ShareFormatError, decode_key_share, encode_key_share
from quorumkeep.wire.backup import (
    MAX_BODY_BYTES,
    PATH_KEYSHARES,
    PATH_RECOVERY_SESSION,
    BackupProtocolError,
    Ed25519Signer,
    Hello,
    Keyset,
    KeyShare,
    PublicKeyPackageInfo,
    RecoveryPush,
    ReplayGuard,
    Signer,
    VerifiedShares,
    check_timestamp,
    make_recovery_ack,
    make_recovery_session,
    open_recovery,
    read_keyset,
    seal_backup,
    verify_shares,
)
from quorumkeep.wire.tls import TLSCredentials, load_encrypted_private_key

log = logging.getLogger("quorumkeep.node.backup")

"""Reads a contract view: ``await read_view("keyset", {})`` (the ledger client's ``view``)."""
SharesSource = Callable[[Keyset], Awaitable[Sequence[KeyShare]]]
"""The node's shares of every domain of the keyset; LookupError (or fewer shares) if it
does not hold them all."""
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


@dataclass(frozen=True)
class _Session:
    node_ephemeral: KxKeyPair
    service_identity_public_key: bytes
    service_ephemeral_public_key: bytes
    migration_started_height: int
    expires_at_ms: int


def backup_service_attestation_problem(view: Any, identity_public_key: bytes) -> str | None:
    """Why the contract's ``attestations`` view forbids sending shares to this service."""
    if not isinstance(view, Mapping) or not view.get("require_tee_backup_services"):
        return None
    for entry in view.get("entries", []):
        if (
            isinstance(entry, Mapping)
            and entry.get("role") == "backup_service"
            and entry.get("key") == identity_public_key.hex()
        ):
            status = entry.get("status")
            if status == "valid":
                return None
            return f"the contract requires TEE backup services; this one's attestation: {status}"
    return "the contract requires TEE backup services; this one has no attestation"


class BackupEndpoints:
    """The endpoints' state (replay table, open recovery sessions) and handlers."""

    def __init__(self, deps: BackupNodeDeps) -> None:
        self.deps = deps
        self.registrations = deps.registrations or RegistrationCache(deps.account, deps.read_view)
        self.replays = ReplayGuard(deps.replay_capacity)
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()
        self._consumed: OrderedDict[bytes, int] = OrderedDict()
        self._import_lock = asyncio.Lock()

    @property
    def tls_public_key(self) -> bytes:
        return self.deps.tls_signer.public_key

    def _now_ms(self) -> int:
        return int(self.deps.clock() * 1000)

    # -- contract reads

    async def _view(self, method: str, args: Mapping[str, Any]) -> Any:
        try:
            return await self.deps.read_view(method, args)
        except BackupProtocolError:
            raise
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            raise BackupProtocolError(
                "contract_unavailable", f"cannot read the contract's {method} view ({code})"
            ) from None

    async def _registered(self) -> Registration:
        """The registration as the contract says now (the node's own client: only called
        once a request's signature verified)."""
        info = await self._view("backup_service_info", {"account": self.deps.account})
        registration = registration_from_json(info)
        if registration is None:
            raise BackupProtocolError(
                "unregistered_caller",
                f"no backup service is registered in the contract for {self.deps.account}",
            )
        return registration

    async def _keyset(self) -> Keyset:
        value = await self._view("keyset", {})
        try:
            return read_keyset(value, "contract keyset")
        except BackupProtocolError:
            raise BackupProtocolError(
                "contract_unavailable", "the keyset view is malformed"
            ) from None

    async def _my_participant_id(self) -> int:
        value = await self._view("participants", {})
        members = value.get("participants") if isinstance(value, Mapping) else None
        if not isinstance(members, list):
            raise BackupProtocolError("contract_unavailable", "the participants view is malformed")
        for member in members:
            if isinstance(member, Mapping) and member.get("account") == self.deps.account:
                if member.get("tls_public_key") != self.tls_public_key.hex():
                    break
                pid = member.get("participant_id")
                if isinstance(pid, int) and not isinstance(pid, bool) and pid >= 1:
                    return pid
        raise BackupProtocolError(
            "not_participant",
            f"the contract does not list this node's TLS key for {self.deps.account}",
        )

    async def _open_migration(self) -> tuple[int, int]:
        """(participant id, started height) of the migration to this node, if one is open."""
        value = await self._view("migration_info", {"account": self.deps.account})
        if isinstance(value, Mapping):
            destination = value.get("destination")
            pid = value.get("participant_id")
            height = value.get("started_height")
            if (
                isinstance(destination, Mapping)
                and destination.get("tls_public_key") == self.tls_public_key.hex()
                and isinstance(pid, int)
                and isinstance(height, int)
            ):
                return pid, height
        raise BackupProtocolError(
            "no_open_migration",
            f"no migration of {self.deps.account} to this node's TLS key is open",
        )

    async def _packages(self, keyset: Keyset) -> dict[int, PublicKeyPackageInfo]:
        packages = {}
        for domain_id in keyset.domain_ids:
            value = await self._view("public_key_package", {"domain_id": domain_id})
            try:
                packages[domain_id] = PublicKeyPackageInfo.from_json(value)
            except BackupProtocolError:
                raise BackupProtocolError(
                    "contract_unavailable", f"public_key_package of domain {domain_id} malformed"
                ) from None
        return packages

    # -- shared checks

    async def _authenticate_hello(
        self, headers: Mapping[str, str], purpose: str
    ) -> tuple[Hello, Registration]:
        """Everything checked without I/O first (docs/backup-protocol.md §8): the signature
        against the registered key cached from the contract's events; only then is the
        registration confirmed on the node's own ledger client."""
        hello = Hello.from_headers(headers)
        if hello.purpose != purpose:
            raise BackupProtocolError("malformed_request", f"this endpoint takes a {purpose} hello")
        self._check_addressee(hello.account, hello.node_tls_public_key)
        now = self._now_ms()
        check_timestamp(hello.timestamp_ms, now)
        cached = await self.registrations.lookup(hello.service_identity_public_key)
        hello.verify(cached.identity_public_key)
        self.replays.check_and_record(hello.nonce, hello.timestamp_ms, now)
        registered = await self._registered()
        self._check_caller(registered, hello.service_identity_public_key)
        return hello, registered

    def _check_addressee(self, account: str, node_tls_public_key: bytes) -> None:
        if node_tls_public_key != self.tls_public_key:
            raise BackupProtocolError(
                "wrong_node", "the request is addressed to another node's TLS key"
            )
        if account != self.deps.account:
            raise BackupProtocolError(
                "wrong_node", f"this node serves account {self.deps.account}, not {account}"
            )

    def _check_caller(self, registered: Registration, identity_public_key: bytes) -> None:
        if identity_public_key != registered.identity_public_key:
            raise BackupProtocolError(
                "unregistered_caller",
                f"the caller's key is not the backup service registered for {self.deps.account}",
            )

    async def _check_attested(self, registered: Registration) -> None:
        """When the contract requires TEE backup services, shares go only to a service
        whose attestation is valid now (``attestations`` view)."""
        view = await self._view("attestations", {"at": int(self.deps.clock())})
        problem = backup_service_attestation_problem(view, registered.identity_public_key)
        if problem is not None:
            raise BackupProtocolError("service_not_attested", problem)

    # -- GET /backup/keyshares

    async def backup(self, headers: Mapping[str, str]) -> dict[str, Any]:
        hello, registered = await self._authenticate_hello(headers, "backup")
        await self._check_attested(registered)
        participant_id = await self._my_participant_id()
        keyset = await self._keyset()
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

    def _prune_sessions(self, now_ms: int) -> None:
        for sid, session in list(self._sessions.items()):
            if session.expires_at_ms <= now_ms:
                del self._sessions[sid]
        for sid, expiry in list(self._consumed.items()):
            if expiry <= now_ms:
                del self._consumed[sid]

    async def recovery_session(self, headers: Mapping[str, str]) -> dict[str, Any]:
        hello, _ = await self._authenticate_hello(headers, "recovery")
        _, started_height = await self._open_migration()
        now = self._now_ms()
        self._prune_sessions(now)
        ephemeral = KxKeyPair.generate(self.deps.random_bytes)
        session = make_recovery_session(
            hello,
            node=self.deps.tls_signer,
            node_ephemeral=ephemeral,
            migration_started_height=started_height,
            now_ms=now,
            random_bytes=self.deps.random_bytes,
        )
        while len(self._sessions) >= self.deps.max_sessions:
            self._sessions.popitem(last=False)
        self._sessions[session.session_id] = _Session(
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
        self._check_addressee(push.account, push.node_tls_public_key)
        now = self._now_ms()
        check_timestamp(push.timestamp_ms, now)
        cached = await self.registrations.lookup(push.service_identity_public_key)
        push.verify(cached.identity_public_key)
        self.replays.check_and_record(push.nonce, push.timestamp_ms, now)
        registered = await self._registered()
        self._check_caller(registered, push.service_identity_public_key)
        session = self._take_session(push, now)
        participant_id, started_height = await self._open_migration()
        if started_height != session.migration_started_height:
            raise BackupProtocolError(
                "no_open_migration", "the migration this session was opened for was replaced"
            )
        keyset = await self._keyset()
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
        packages = await self._packages(keyset)
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

    def _take_session(self, push: RecoveryPush, now_ms: int) -> _Session:
        """The push's session, consumed: whatever happens next, it cannot be used again."""
        self._prune_sessions(now_ms)
        if push.session_id in self._consumed:
            raise BackupProtocolError("replay", "this recovery session was already used")
        session = self._sessions.pop(push.session_id, None)
        if session is None:
            raise BackupProtocolError(
                "unknown_session", "no open recovery session has this id (expired or unknown)"
            )
        self._consumed[push.session_id] = session.expires_at_ms
        while len(self._consumed) > 4 * self.deps.max_sessions:
            self._consumed.popitem(last=False)
        if (
            session.service_identity_public_key != push.service_identity_public_key
            or session.service_ephemeral_public_key != push.service_ephemeral_public_key
            or session.node_ephemeral.public_key != push.node_ephemeral_public_key
        ):
            raise BackupProtocolError(
                "unknown_session", "the push's keys are not the ones its session was opened with"
            )
        return session


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


async def _answer(
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


async def _read_body(request: Request) -> bytes:
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


RETRY_AFTER = {"Retry-After": "1"}
"""Sent with the 503 of a node that has not applied the contract's first state yet."""

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
        return await _answer(
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
        return await _answer(
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
            return await endpoints.recover(await _read_body(request))

        return await _answer(refusals, deps.account, "recovery", recover)

    return router


# --- glue for the node: its TLS key, its keystore ---------------------------------------------


def tls_signer(credentials: TLSCredentials) -> Ed25519Signer:
    """The node's TLS key as a :class:`Signer` (decrypted in memory from its PKCS#8 file)."""
    pem = credentials.private_key_path.read_bytes()
    private = load_encrypted_private_key(pem, credentials.password)
    seed = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    signer = Ed25519Signer(seed)
    if signer.public_key != credentials.public_key:
        raise ValueError("the TLS key file does not hold the node's TLS key")
    return signer


def keystore_shares(keystore: Keystore, keyset: Keyset) -> list[KeyShare]:
    """The node's shares of ``keyset`` from its keystore; LookupError if one is missing or
    belongs to another key."""
    shares = []
    for domain in keyset.domains:
        stored = keystore.get_key_share(domain.domain_id, keyset.epoch)
        try:
            key, public = decode_key_share(stored)
        except ShareFormatError:
            raise LookupError(f"stored share of domain {domain.domain_id} is unusable") from None
        if public.group_public_key != domain.public_key:
            raise LookupError(f"stored share of domain {domain.domain_id} is for another key")
        shares.append(KeyShare(domain.domain_id, keyset.epoch, key.identifier, key.signing_share))
    return shares


def keystore_share_source(keystore: Keystore) -> SharesSource:
    """``current_shares`` for :class:`BackupNodeDeps`, reading the keystore off the loop."""

    async def current_shares(keyset: Keyset) -> list[KeyShare]:
        return await asyncio.to_thread(keystore_shares, keystore, keyset)

    return current_shares


def store_verified_shares(keystore: Keystore, verified: VerifiedShares) -> None:
    """Write verified shares into the keystore in the node's share format (replacing any
    stale record of the same slot: these match the contract, whatever was there did not)."""
    for domain_id, (key, public) in verified.key_packages().items():
        share, public_bytes = encode_key_share(key, public)
        keystore.put_key_share(domain_id, verified.keyset.epoch, share, public_bytes, replace=True)
