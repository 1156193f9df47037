"""The coordinator: turns the contract's state into what this node does.

It follows the contract's events through the ledger's long-poll stream and, after every
batch, re-reads the ``state`` view and acts on it — never on an event alone, so a missed or
reordered event cannot lead it astray (rules: docs/node.md):

- onboarding (:func:`quorumkeep.node.decisions.onboarding_decision`): take part only while
  the contract lists our account with our TLS key; a node whose key was replaced after it
  took part wipes its shares and presignatures (backward secrecy) and stands by for a
  migration back to it — or exits (:class:`Decommissioned`) if so configured;
- migrations to this node: the backup service delivers the shares through the web API
  (:meth:`Coordinator.import_migration_shares`); they are checked against the contract,
  stored, and ``conclude_node_migration`` is called until the contract shows the migration
  concluded (then we take part) or gone (then the imported shares are deleted);
- participant changes: the mesh follows the contract's participant set (the serving set, and
  during a resharing the new set too); presignatures involving a participant whose TLS key
  changed or who left are purged, the rest kept;
- Initializing: one PedPoP DKG per domain being generated (session id from the key event id),
  the share stored per (domain, epoch), then ``vote_pk``; a failed run votes to abort;
- Resharing: old holders deal, new holders receive and store the new share, then
  ``vote_reshared``; once the new epoch is Running, older shares are deleted;
- Running (and while Initializing/Resharing: the serving keyset signs on): every pending sign
  request gets a deterministic leader, which leads it through the SigningService and submits
  ``respond``; others take over after a timeout if it is still pending.

Contract calls are signed by the node's signer key (a function-call key on the operator's
account); transient ledger errors are retried with bounded backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

import nacl.signing

from quorumkeep.contract.errors import ContractError
from quorumkeep.contract.state import (
    ContractState,
    Initializing,
    KeyEventId,
    Resharing,
    Running,
    SignRequest,
    verifying_shares_json,
)
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient, LedgerEvent, TxOutcome
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.node.attestation import NodeAttestation, marked_departing
from quorumkeep.node.calls import ContractCaller, transient
from quorumkeep.node.config import NodeConfig
from quorumkeep.node.decisions import (
    MigrationProgress,
    Onboarding,
    RecoveredShare,
    Role,
    changed_participants,
    migration_progress,
    migration_to_me,
    onboarding_decision,
    peer_map,
    recovered_shares_problem,
    takeover_delay,
)
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore, KeystoreError, RecordNotFound
from quorumkeep.node.mesh import Mesh, PeerInfo
from quorumkeep.node.metrics import MetricsSnapshot, NodeMetrics
from quorumkeep.node.protocols.dkg import run_dkg
from quorumkeep.node.protocols.presign import PresignaturePool
from quorumkeep.node.protocols.reshare import run_reshare
from quorumkeep.node.protocols.sign import SigningService, SignJob
from quorumkeep.node.sessions import SessionRouter
from quorumkeep.node.shares import ShareFormatError, decode_key_share, encode_key_share
from quorumkeep.wire.backup import BackupProtocolError, VerifiedShares

log = logging.getLogger("quorumkeep.node.coordinator")
node_log = logging.getLogger("quorumkeep.node")

SIGN_RETRY_MAX_DELAY = 5.0
ANNOUNCE_WAIT = 0.5
"""Seconds a member waits for a sign request it is asked about to reach its own event
stream before it asks the ledger."""
SIGN_EVENTS = frozenset({"sign_requested", "sign_responded", "sign_failed"})
SIGN_REQUEST_FIELDS = (
    "request_id",
    "account",
    "payload",
    "path",
    "domain_id",
    "public_key",
    "block_height",
    "deadline_height",
)
META_PARTICIPATED = "participated_as"
META_PEER_KEYS = "peer_tls_keys"
META_KEYGEN = "keygen_attempt/{domain}/{epoch}"
META_DECOMMISSIONED = "decommissioned"
"""Set when a migration replaced this node and it wiped itself; cleared when it takes part
again (a migration back to it) or its account leaves the participants."""
MIGRATION_RETRY_MAX_DELAY = 2.0


def contract_verifying_shares(public: PublicKeyPackage) -> dict[str, str]:
    """A key's verifying shares as the contract's vote_pk / vote_reshared take them."""
    return verifying_shares_json(tuple(sorted(public.verifying_shares.items())))


class Decommissioned(Exception):
    """This node was replaced in the contract and wiped its shares; raised by ``run`` only
    with ``exit_on_decommission`` (otherwise the node stands by)."""


@dataclass
class _MigrationImport:
    """Shares imported for the migration opened at ``started_height``, being concluded."""

    started_height: int
    keyset: dict[str, Any]
    task: asyncio.Task[None]
    imported_at: float


@dataclass(frozen=True)
class CoordinatorSettings:
    takeover_timeout: float = 2.0
    """Seconds before the next participant in line leads a sign request itself."""
    key_event_timeout: float = 60.0
    """Bound on one DKG or resharing run (then the node votes to abort the attempt)."""
    presignature_target: int = 64
    """Presignatures this node keeps per domain as owner."""
    ledger_attempts: int = 6
    ledger_backoff: float = 0.1
    exit_on_decommission: bool = False
    """Exit (``run`` raises :class:`Decommissioned`) after wiping, instead of standing by."""


class Coordinator:
    """One node's reaction to the contract. ``run`` until cancelled or decommissioned."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        identity: NodeIdentity,
        keystore: Keystore,
        ledger: AsyncLedgerClient,
        mesh: Mesh,
        metrics: NodeMetrics,
        settings: CoordinatorSettings | None = None,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.config = config
        self.identity = identity
        self.keystore = keystore
        self.ledger = ledger
        self.mesh = mesh
        self.metrics = metrics
        self.settings = settings or CoordinatorSettings()
        self._random_bytes = random_bytes
        self.account = config.account
        self._caller = ContractCaller(
            ledger,
            AccountSigner(config.account, nacl.signing.SigningKey(identity.signer_seed)),
            attempts=self.settings.ledger_attempts,
            backoff=self.settings.ledger_backoff,
        )
        self.router = SessionRouter(mesh)
        self.pool: PresignaturePool | None = None
        self.signing: SigningService | None = None
        self._state: ContractState | None = None
        self._decision: Onboarding | None = None
        self._me: int | None = None
        self._height = -1
        self._changed = asyncio.Event()
        self._sign_events: list[LedgerEvent] = []
        self._announced: dict[int, SignRequest] = {}
        self._finished: set[int] = set()
        self._responding: set[int] = set()
        self._announce_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._needs_state = True
        self._follower: asyncio.Task[None] | None = None
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}
        self._sign_tasks: dict[int, asyncio.Task[None]] = {}
        self._seen_at: dict[int, float] = {}
        self._reshare_done: set[KeyEventId] = set()
        self._submitted_info: str | None = None
        self._started = time.monotonic()
        self._closed = False
        self._peers: dict[int, PeerInfo] = {}
        self._keys: dict[tuple[int, int], tuple[KeyPackage, PublicKeyPackage]] = {}
        self._participated: int | None = None
        self._peer_keys: dict[int, bytes] | None = None
        self._standby: bool | None = None
        self._migration: _MigrationImport | None = None
        self._import_lock = asyncio.Lock()
        self._contract_moved = asyncio.Event()
        self.attestation: NodeAttestation | None = None  # set by the node process

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Set up the presignature pool and the signing service (idle until we take part:
        :meth:`_configure_services` hands them our participant id and keys)."""
        self.pool = PresignaturePool(
            self.router,
            self.keystore,
            None,
            self._random_bytes,
            target=self.settings.presignature_target,
        )
        self.signing = SigningService(
            self.router, self.keystore, self.pool, None, is_pending=self.is_pending
        )

    async def run(self) -> None:
        """Follow the contract until cancelled; raises :class:`Decommissioned`."""
        status = await self._ledger_retry("status", self.ledger.status)
        self._height = int(status["height"])
        self._follower = asyncio.create_task(self._follow(self._height), name="ledger-follow")
        self._changed.set()
        delay = self.settings.ledger_backoff
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                if self._follower.done():
                    self._follower.result()  # re-raise what stopped the follower
                    raise RuntimeError("the ledger event stream ended")
                try:
                    await self._refresh()
                except LedgerError as exc:
                    if not transient(exc):
                        raise
                    # The ledger is down for longer than the retries: keep the node up and
                    # try again; the follower reconnects on its own.
                    log.warning("cannot read the contract state (%s); retrying", exc.code)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    self._changed.set()
                else:
                    delay = self.settings.ledger_backoff
        finally:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower

    async def close(self) -> None:
        """Cancel every protocol run and background task (bounded)."""
        self._closed = True
        tasks = [*self._tasks.values(), *self._sign_tasks.values()]
        if self._follower is not None:
            tasks.append(self._follower)
        if self._migration is not None:
            tasks.append(self._migration.task)
        for task in tasks:
            task.cancel()
        if self.pool is not None:
            await self.pool.close()
        if self.signing is not None:
            await self.signing.close()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._caller.close()
        self.router.close()

    async def _follow(self, since: int) -> None:
        try:
            async for event in self.ledger.follow_events(since):
                self._height = max(self._height, event.height)
                self._caller.saw_height(event.height)
                self._note_event(event)
                self._changed.set()
        finally:
            self._changed.set()  # wake run() so it sees the follower stopped

    def _note_event(self, event: LedgerEvent) -> None:
        if event.kind not in SIGN_EVENTS:
            self._needs_state = True
            return
        self._sign_events.append(event)
        request_id = event.data.get("request_id")
        if not isinstance(request_id, int):
            return
        if event.kind != "sign_requested":
            self._announced.pop(request_id, None)
            return
        self._seen_at.setdefault(request_id, time.monotonic())
        # Members are asked for shares as soon as the leader saw the request: remember it
        # now (is_pending), before the run loop gets to this batch.
        with contextlib.suppress(KeyError, ValueError, ContractError):
            self._announced[request_id] = SignRequest.from_json(
                {k: event.data[k] for k in SIGN_REQUEST_FIELDS}, "event"
            )
        for waiter in self._announce_waiters.pop(request_id, []):
            if not waiter.done():
                waiter.set_result(None)

    def _prune_announced(self) -> None:
        state = self._state
        if state is not None:
            for request_id in [r for r in self._announced if r < state.next_request_id]:
                del self._announced[request_id]

    async def _refresh(self) -> None:
        """Act on what changed. Any event but a sign request's coming or going means a full
        re-read of the ``state`` view. A batch of sign events only changes the pending
        requests, which the events carry in full: they are applied to the last state read
        (under load that saves every node a state read per block)."""
        events, self._sign_events = self._sign_events, []
        if self._needs_state or self._state is None:
            self._needs_state = False
            try:
                value = await self._ledger_retry("view state", self.ledger.view, "state")
                state = ContractState.from_json(value)
            except BaseException:
                self._needs_state = True
                raise
            await self._apply(state)
            self._prune_announced()
            return
        state = self._state
        try:
            for event in events:
                request_id = event.data.get("request_id")
                if event.kind == "sign_requested":
                    # Ids grow: one below next_request_id is known already (pending in the
                    # state, or answered since), and must not come back from an old event.
                    if isinstance(request_id, int) and request_id >= state.next_request_id:
                        request = SignRequest.from_json(
                            {k: event.data[k] for k in SIGN_REQUEST_FIELDS}, "event"
                        )
                        state.requests[request.request_id] = request
                        state.next_request_id = request.request_id + 1
                elif isinstance(request_id, int):
                    state.requests.pop(request_id, None)
        except (KeyError, ValueError, ContractError):
            self._needs_state = True
            self._changed.set()
            return
        self._prune_announced()
        if self._me is not None and self._decision is not None:
            self._serve_requests(state, self._me)

    # -- the ledger -----------------------------------------------------------------------

    async def _ledger_retry(
        self, what: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> Any:
        delay = self.settings.ledger_backoff
        for attempt in range(self.settings.ledger_attempts):
            try:
                return await func(*args)
            except LedgerError as exc:
                if not transient(exc) or attempt == self.settings.ledger_attempts - 1:
                    raise
                self.metrics.ledger_errors.labels(operation=what).inc()
                log.info("ledger %s failed (%s); retrying in %.2fs", what, exc.code, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    async def call(self, method: str, args: dict[str, Any]) -> TxOutcome:
        """A contract call signed by our signer key; ContractCallFailed if rejected."""
        try:
            return await self._caller.call(method, args)
        except LedgerError as exc:
            if not isinstance(exc, ContractCallFailed):
                self.metrics.ledger_errors.labels(operation=method).inc()
            raise

    # -- onboarding and participants ------------------------------------------------------

    def _participated_id(self) -> int | None:
        """The participant id we took part as (kept in the keystore: survives restarts)."""
        if self._participated is None:
            value = self.keystore.get_metadata(META_PARTICIPATED)
            self._participated = int(value) if value is not None and value.isdigit() else 0
        return self._participated or None

    def _is_standby(self) -> bool:
        """Whether we were replaced by a migration and wiped (kept in the keystore)."""
        if self._standby is None:
            self._standby = self.keystore.get_metadata(META_DECOMMISSIONED) is not None
        return self._standby

    def _set_standby(self, value: bool) -> None:
        if value:
            self.keystore.set_metadata(META_DECOMMISSIONED, "1")
        elif self._is_standby():
            self.keystore.delete_metadata(META_DECOMMISSIONED)
        self._standby = value

    async def _apply(self, state: ContractState) -> None:
        self._state = state
        if self.attestation is not None:
            self.attestation.observe(state)
        self._contract_moved.set()  # a migration being concluded re-reads at once
        decision = onboarding_decision(
            state,
            self.account,
            self.identity.tls_public_key,
            participated=self._participated_id() is not None,
            decommissioned=self._is_standby(),
        )
        if self._decision is None or self._decision.role != decision.role:
            log.info(
                "role=%s participant_id=%s protocol_state=%s reason=%s",
                decision.role.value,
                decision.participant_id,
                state.protocol.name,
                decision.reason,
            )
        self._decision = decision
        if decision.wipe:
            await self._decommission(state, decision)
        me = decision.participant_id if decision.role is Role.PARTICIPANT else None
        if me is not None and self._participated_id() != me:
            self.keystore.set_metadata(META_PARTICIPATED, str(me))
            self._participated = me
        if me is not None and self._is_standby():
            self._set_standby(False)
        self._me = me
        await self._follow_participants(state, me)
        self._configure_services(state, me)
        if me is None:
            self._cancel_all()
            if decision.role is Role.NOT_PARTICIPANT:
                if self._is_standby():
                    self._set_standby(False)
                self._delete_departed_shares(state)
                await self._offer_info(state)
            else:
                await self._settle_held_shares()
            return
        protocol = state.protocol
        if isinstance(protocol, Initializing):
            self._keygen(protocol, me)
        elif isinstance(protocol, Resharing):
            self._reshare(protocol, me)
        else:
            self._cancel_tasks(lambda key: True)
            if isinstance(protocol, Running):
                self._cleanup_shares(protocol, me)
        self._serve_requests(state, me)

    async def _decommission(self, state: ContractState, decision: Onboarding) -> None:
        """A migration replaced us: nothing we hold may outlive that (backward secrecy).

        The mesh is dropped and presignature generation stopped first, so no batch finishing
        after the wipe writes a new record."""
        self._cancel_all()
        self._me = None
        await self._follow_participants(state, None)
        self._configure_services(state, None)
        if self.pool is not None:
            await self.pool.stop()
        await asyncio.to_thread(self.keystore.wipe)
        self.keystore.delete_metadata(META_PARTICIPATED)
        self._participated = 0
        self._keys = {}
        self._set_standby(True)
        self.metrics.decommissions.inc()
        if self.settings.exit_on_decommission:
            raise Decommissioned(decision.reason)
        node_log.warning(
            "decommissioned: %s; key shares and presignatures wiped, standing by for a "
            "migration back to this node",
            decision.reason,
        )

    # -- migration to this node ------------------------------------------------------------

    def _migration_busy(self) -> bool:
        """Shares are being imported or an imported migration is being concluded."""
        running = self._migration is not None and not self._migration.task.done()
        return running or self._import_lock.locked()

    async def import_migration_shares(self, verified: VerifiedShares) -> None:
        """The backup endpoint's import: shares the backup service delivered for a migration
        to this node, already opened and checked by the endpoint.

        They are checked again against a fresh read of the contract (the migration to us is
        open and our signer key concludes it, the keyset is the one in force, every domain
        has a share that reproduces our participant's verifying share) — nothing is stored
        otherwise — then stored and concluded in the background."""
        async with self._import_lock:
            value = await self._ledger_retry("view state", self.ledger.view, "state")
            state = ContractState.from_json(value)
            shares = [
                RecoveredShare(s.domain_id, s.epoch, s.participant_id, s.signing_share)
                for s in verified.shares
            ]
            problem = recovered_shares_problem(
                state,
                self.account,
                self.identity.tls_public_key,
                self.identity.signer_public_key,
                shares,
            )
            if problem is not None:
                code, message = problem
                log.warning("migration shares refused: %s [%s]", message, code)
                raise BackupProtocolError(code, message)
            migration = migration_to_me(state, self.account, self.identity.tls_public_key)
            assert migration is not None and isinstance(state.protocol, Running)
            running = state.protocol
            await asyncio.to_thread(
                self._store_recovered, running, migration.participant_id, shares
            )
            self.metrics.migration_imports.inc()
            log.info(
                "migration shares imported account=%s participant_id=%d epoch=%d domains=%s "
                "started_height=%d",
                self.account,
                migration.participant_id,
                running.epoch,
                [d.domain_id for d in running.keyset.domains],
                migration.started_height,
            )
            self._start_conclude(migration.started_height, running.keyset.to_json())

    def _store_recovered(
        self, running: Running, participant_id: int, shares: list[RecoveredShare]
    ) -> None:
        """Store checked shares under (domain, epoch) with the contract's public packages."""
        by_domain = {s.domain_id: s for s in shares}
        for domain in running.keyset.domains:
            verifying = dict(domain.verifying_shares)
            public = PublicKeyPackage(domain.public_key, verifying, running.parameters.threshold)
            key = KeyPackage(
                identifier=participant_id,
                signing_share=by_domain[domain.domain_id].signing_share,
                verifying_share=verifying[participant_id],
                group_public_key=domain.public_key,
                threshold=running.parameters.threshold,
            )
            self._store_share(domain.domain_id, running.epoch, key, public)

    def _start_conclude(self, started_height: int, keyset: dict[str, Any]) -> None:
        current = self._migration
        if current is not None and not current.task.done():
            if current.started_height == started_height and current.keyset == keyset:
                return
            current.task.cancel()
        task = asyncio.create_task(self._conclude_migration(keyset), name="migration-conclude")
        self._migration = _MigrationImport(started_height, keyset, task, time.monotonic())

    async def _conclude_migration(self, keyset: dict[str, Any]) -> None:
        """Call ``conclude_node_migration`` until a fresh state shows it concluded or gone.

        The outcome of a call is never trusted alone: an included call can still fail (a
        newer migration replaced ours, a resharing started), and a refused one may have been
        beaten by our own earlier call. Backoff is bounded; the loop ends with the
        migration, not with a count."""
        delay = self.settings.ledger_backoff
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                value = await self._ledger_retry("view state", self.ledger.view, "state")
                state = ContractState.from_json(value)
            except LedgerError as exc:
                log.warning("cannot read the contract state to conclude (%s); retrying", exc.code)
                await self._pause(delay)
                delay = min(delay * 2, MIGRATION_RETRY_MAX_DELAY)
                continue
            progress = migration_progress(
                state,
                self.account,
                self.identity.tls_public_key,
                self.identity.signer_public_key,
                keyset,
            )
            if progress is MigrationProgress.CONCLUDED:
                self.metrics.migrations_concluded.inc()
                log.info(
                    "migration concluded account=%s calls=%d seconds=%.3f (since the import)",
                    self.account,
                    attempt,
                    time.monotonic() - started,
                )
                self._wake()
                return
            if progress is MigrationProgress.GONE:
                async with self._import_lock:
                    # A newer import waiting for the lock cancels us before it stores.
                    await asyncio.to_thread(
                        self._discard_shares,
                        "the migration to this node was cancelled or replaced, or the keyset "
                        "moved on",
                    )
                self._wake()
                return
            attempt += 1
            try:
                attested = (
                    {}
                    if self.attestation is None
                    else await self.attestation.call_fields(self._state)
                )
                await self.call("conclude_node_migration", {"keyset": keyset, **attested})
            except ContractCallFailed as exc:
                log.info(
                    "conclude_node_migration not applied (call %d): %s: %s; re-reading",
                    attempt,
                    exc.code,
                    exc.message,
                )
            except LedgerError as exc:
                level = logging.WARNING if attempt % 10 == 1 else logging.DEBUG
                log.log(
                    level,
                    "conclude_node_migration failed (call %d): %s: %s; retrying",
                    attempt,
                    exc.code,
                    exc.message,
                )
            else:
                continue  # included: the next read shows the outcome
            await self._pause(delay)
            delay = min(delay * 2, MIGRATION_RETRY_MAX_DELAY)

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the contract state changed meanwhile (a
        cancelled migration's shares then go at once, not after the backoff)."""
        self._contract_moved.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._contract_moved.wait()

    def _wake(self) -> None:
        self._needs_state = True
        self._changed.set()

    def _discard_shares(self, reason: str) -> None:
        """Delete shares imported for a migration that can no longer conclude (never those
        of a node that took part: decommissioning handles that)."""
        if self._participated_id() is not None:
            return
        held = self.keystore.key_shares()
        if not held and not self.keystore.presignature_counts():
            return
        self.keystore.wipe()
        self._keys = {}
        log.warning(
            "deleted %d imported key shares: %s",
            len(held),
            reason,
        )

    async def _settle_held_shares(self) -> None:
        """Not a participant, yet holding shares: they were imported for a migration to us.

        If that migration is still open for the keyset in force (we restarted between the
        import and the conclusion), conclude with them; otherwise delete them. Decided on a
        fresh read under the import lock, never on the state being applied: that one may
        predate an import that just happened."""
        if self._migration_busy():
            return
        if not self.keystore.key_shares() and not self.keystore.presignature_counts():
            return
        async with self._import_lock:
            if self._migration is not None and not self._migration.task.done():
                return
            try:
                value = await self._ledger_retry("view state", self.ledger.view, "state")
                state = ContractState.from_json(value)
            except LedgerError as exc:
                log.info("cannot read the contract state (%s); held shares kept for now", exc.code)
                return
            tls, signer = self.identity.tls_public_key, self.identity.signer_public_key
            decision = onboarding_decision(
                state,
                self.account,
                tls,
                participated=self._participated_id() is not None,
                decommissioned=self._is_standby(),
            )
            if decision.role is Role.PARTICIPANT or decision.wipe:
                return  # the next refresh applies that state
            running = state.protocol
            migration = migration_to_me(state, self.account, tls)
            reason = "no migration to this node is open any more"
            if migration is not None and isinstance(running, Running):
                shares: list[RecoveredShare] = []
                for domain in running.keyset.domains:
                    with contextlib.suppress(RecordNotFound, ShareFormatError, KeystoreError):
                        key, _ = await asyncio.to_thread(
                            self._load_share, domain.domain_id, running.epoch
                        )
                        shares.append(
                            RecoveredShare(
                                domain.domain_id, running.epoch, key.identifier, key.signing_share
                            )
                        )
                problem = recovered_shares_problem(state, self.account, tls, signer, shares)
                if problem is None:
                    log.info("stored shares match the open migration to this node; concluding it")
                    self._start_conclude(migration.started_height, running.keyset.to_json())
                    return
                reason = f"stored shares unusable for the open migration: {problem[1]}"
            await asyncio.to_thread(self._discard_shares, reason)

    async def _follow_participants(self, state: ContractState, me: int | None) -> None:
        peers = peer_map(state)
        if self.attestation is not None:
            peers = self.attestation.usable_peers(state, peers, me)
        if self._peer_keys is None:
            # What the participant set was when we last looked, even before a restart: a
            # participant replaced while we were down still gets its presignatures purged.
            self._peer_keys = {}
            stored = self.keystore.get_metadata(META_PEER_KEYS)
            if stored:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    self._peer_keys = {
                        int(p): bytes.fromhex(k) for p, k in json.loads(stored).items()
                    }
        before = self._peer_keys
        after = {pid: info.tls_public_key for pid, info in peers.items()}
        if state.serving() is not None:
            gone = changed_participants(before, after)
            if gone:
                if self.pool is not None:
                    purged = self.pool.purge_involving(gone)
                else:
                    purged = self.keystore.purge_presignatures_involving(sorted(gone))
                self.metrics.presignatures_purged.inc(purged)
                log.info(
                    "participants changed or left: %s; purged %d presignatures involving them",
                    sorted(gone),
                    purged,
                )
            if after != before:
                document = {str(p): k.hex() for p, k in sorted(after.items())}
                self.keystore.set_metadata(META_PEER_KEYS, json.dumps(document))
                self._peer_keys = after
        if peers != self._peers or me != self.mesh.my_id:
            await self.mesh.update_participants(peers, me)
            self._peers = peers

    async def _offer_info(self, state: ContractState) -> None:
        """Not a participant: log our info, and submit it as a candidate (once per process,
        unless the ledger could not take the call: then at the next change)."""
        info = self.identity.participant_info(self.config)
        text = json.dumps(info, sort_keys=True)
        if state.serving() is None or self._submitted_info == text:
            return
        candidate = state.candidates.get(self.account)
        if candidate is not None and candidate.tls_public_key == self.identity.tls_public_key:
            self._submitted_info = text
            return
        log.info("not a participant; participant info to register: %s", text)
        try:
            attested = {} if self.attestation is None else await self.attestation.call_fields(state)
            await self.call("submit_participant_info", {**info, **attested})
        except ContractCallFailed as exc:
            self._submitted_info = text
            log.info("participant info not accepted as a candidate (%s: %s)", exc.code, exc.message)
        except LedgerError as exc:
            log.info("could not submit our participant info (%s: %s)", exc.code, exc.message)
        else:
            self._submitted_info = text
            log.info("submitted our participant info as a candidate")

    # -- tasks ----------------------------------------------------------------------------

    def _start(self, key: Hashable, coro: Coroutine[Any, Any, Any]) -> None:
        if key in self._tasks:
            coro.close()
            return
        task = asyncio.create_task(coro, name=f"coordinator-{key}")
        self._tasks[key] = task

        def done(finished: asyncio.Task[Any]) -> None:
            if self._tasks.get(key) is finished:
                del self._tasks[key]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("task %s failed: %r", key, finished.exception())

        task.add_done_callback(done)

    def _cancel_tasks(self, predicate: Callable[[Hashable], bool]) -> None:
        for key, task in list(self._tasks.items()):
            if predicate(key):
                task.cancel()
                del self._tasks[key]

    def _cancel_all(self) -> None:
        self._cancel_tasks(lambda key: True)
        for task in self._sign_tasks.values():
            task.cancel()
        self._sign_tasks.clear()

    # -- key shares -----------------------------------------------------------------------

    def _load_share(self, domain_id: int, epoch: int) -> tuple[KeyPackage, PublicKeyPackage]:
        return decode_key_share(self.keystore.get_key_share(domain_id, epoch))

    def _store_share(
        self, domain_id: int, epoch: int, key: KeyPackage, public: PublicKeyPackage
    ) -> None:
        share, public_bytes = encode_key_share(key, public)
        # Replacing is only ever for a key the contract has not accepted yet (a rerun of an
        # aborted attempt): the callers check that first.
        self.keystore.put_key_share(domain_id, epoch, share, public_bytes, replace=True)

    def _cleanup_shares(self, running: Running, me: int) -> None:
        """Running at epoch e: shares of older epochs are obsolete once we hold epoch e's for
        every domain; shares of later epochs belong to a cancelled resharing."""
        held = self.keystore.key_shares()
        domains = {d.domain_id for d in running.keyset.domains}
        current = {r.domain_id for r in held if r.epoch == running.epoch}
        for ref in held:
            stale_new = ref.epoch > running.epoch
            stale_old = ref.epoch < running.epoch and domains <= current
            if stale_new or stale_old:
                self.keystore.delete_key_share(ref.domain_id, ref.epoch)
                log.info(
                    "deleted key share domain=%d epoch=%d (epoch %d is in force)",
                    ref.domain_id,
                    ref.epoch,
                    running.epoch,
                )

    def _delete_departed_shares(self, state: ContractState) -> None:
        """Not a participant of a Running contract (we left, or joined a resharing that was
        cancelled): no share we hold is of any use."""
        protocol = state.protocol
        if not isinstance(protocol, Running):
            return
        for ref in self.keystore.key_shares():
            self.keystore.delete_key_share(ref.domain_id, ref.epoch)
            log.info(
                "not a participant: deleted key share domain=%d epoch=%d",
                ref.domain_id,
                ref.epoch,
            )
        if self.keystore.presignature_counts():
            removed = self.keystore.purge_all_presignatures()
            log.info("not a participant: deleted %d presignatures", removed)

    # -- key generation -------------------------------------------------------------------

    def _keygen(self, initializing: Initializing, me: int) -> None:
        participants = [m.participant_id for m in initializing.running.parameters.members]
        threshold = initializing.running.parameters.threshold
        wanted = set()
        for event in initializing.generating:
            if event.complete or self.account in event.votes:
                continue
            key = ("dkg", event.id)
            wanted.add(key)
            self._start(key, self._run_dkg(event.id, me, participants, threshold))
        self._cancel_tasks(
            lambda key: isinstance(key, tuple) and key[0] == "dkg" and key not in wanted
        )

    async def _run_dkg(
        self, event_id: KeyEventId, me: int, participants: list[int], threshold: int
    ) -> None:
        domain_id, epoch, attempt = event_id.domain_id, event_id.epoch, event_id.attempt
        marker = META_KEYGEN.format(domain=domain_id, epoch=epoch)
        public: PublicKeyPackage | None = None
        if self.keystore.get_metadata(marker) == str(attempt):
            # We finished this very attempt before a restart but did not get to vote.
            with contextlib.suppress(RecordNotFound, ShareFormatError):
                public = self._load_share(domain_id, epoch)[1]
        if public is None:
            session_id = f"dkg-{domain_id}-{epoch}-{attempt}"
            started = time.monotonic()
            log.info("keygen started domain=%d epoch=%d attempt=%d", domain_id, epoch, attempt)
            try:
                key, public = await run_dkg(
                    self.router,
                    session_id=session_id,
                    me=me,
                    participants=participants,
                    threshold=threshold,
                    random_bytes=self._random_bytes,
                    timeout=self.settings.key_event_timeout,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.key_events.labels(kind="dkg", outcome="failed").inc()
                log.warning(
                    "keygen failed domain=%d epoch=%d attempt=%d: %s; voting to abort",
                    domain_id,
                    epoch,
                    attempt,
                    exc,
                )
                await self._vote_abort(event_id)
                return
            await asyncio.to_thread(self._store_share, domain_id, epoch, key, public)
            self.keystore.set_metadata(marker, str(attempt))
            self.metrics.key_events.labels(kind="dkg", outcome="ok").inc()
            log.info(
                "keygen done domain=%d epoch=%d attempt=%d public_key=%s seconds=%.3f",
                domain_id,
                epoch,
                attempt,
                public.group_public_key.hex(),
                time.monotonic() - started,
            )
        try:
            await self.call(
                "vote_pk",
                {
                    "key_event_id": event_id.to_json(),
                    "public_key": public.group_public_key.hex(),
                    "verifying_shares": contract_verifying_shares(public),
                },
            )
        except ContractCallFailed as exc:
            log.info("vote_pk domain=%d not counted: %s: %s", domain_id, exc.code, exc.message)

    async def _vote_abort(self, event_id: KeyEventId) -> None:
        try:
            await self.call("vote_abort_key_event", {"key_event_id": event_id.to_json()})
        except ContractCallFailed as exc:
            # Someone else aborted it already, or it completed: either way nothing to do.
            log.info("vote_abort_key_event not applied: %s", exc.code)

    # -- resharing ------------------------------------------------------------------------

    def _reshare(self, resharing: Resharing, me: int) -> None:
        old = resharing.previous.parameters
        new = resharing.parameters
        in_new = new.get(self.account) is not None
        wanted = set()
        for event in resharing.resharing:
            if event.complete:
                continue
            if in_new and self.account in event.votes:
                continue
            if not in_new and event.id in self._reshare_done:
                continue
            key = ("reshare", event.id)
            wanted.add(key)
            self._start(key, self._run_reshare(resharing, event.id, me, old, new))
        self._cancel_tasks(
            lambda key: isinstance(key, tuple) and key[0] == "reshare" and key not in wanted
        )

    async def _run_reshare(
        self, resharing: Resharing, event_id: KeyEventId, me: int, old: Any, new: Any
    ) -> None:
        domain_id, epoch, attempt = event_id.domain_id, event_id.epoch, event_id.attempt
        old_epoch = resharing.previous.epoch
        domain = resharing.previous.keyset.get(domain_id)
        assert domain is not None
        old_key: KeyPackage | None = None
        old_public: PublicKeyPackage | None = None
        if old.get(self.account) is not None:
            try:
                old_key, old_public = await asyncio.to_thread(
                    self._load_share, domain_id, old_epoch
                )
            except (RecordNotFound, ShareFormatError, KeystoreError) as exc:
                log.warning(
                    "no usable share of domain=%d epoch=%d to deal from: %s",
                    domain_id,
                    old_epoch,
                    exc,
                )
        if old_public is None:
            # A newcomer, or an old holder that lost its share: the contract's package is the
            # reference every dealer's commitment is checked against, not the leader's word.
            old_public = PublicKeyPackage(
                domain.public_key, dict(domain.verifying_shares), old.threshold
            )
        session_id = f"reshare-{domain_id}-{epoch}-{attempt}"
        started = time.monotonic()
        log.info("resharing started domain=%d epoch=%d attempt=%d", domain_id, epoch, attempt)
        try:
            result = await run_reshare(
                self.router,
                session_id=session_id,
                me=me,
                old_participants=[m.participant_id for m in old.members],
                old_threshold=old.threshold,
                old_public=old_public,
                old_key=old_key,
                new_participants=[m.participant_id for m in new.members],
                new_threshold=new.threshold,
                group_public_key=domain.public_key,
                random_bytes=self._random_bytes,
                timeout=self.settings.key_event_timeout,
                attempt=attempt,
                absent=marked_departing(self._state, old, new) if self._state else (),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.key_events.labels(kind="reshare", outcome="failed").inc()
            log.warning(
                "resharing failed domain=%d epoch=%d attempt=%d: %s; voting to abort",
                domain_id,
                epoch,
                attempt,
                exc,
            )
            await self._vote_abort(event_id)
            return
        self.metrics.key_events.labels(kind="reshare", outcome="ok").inc()
        if result is None:
            self._reshare_done.add(event_id)
            log.info(
                "resharing dealt domain=%d epoch=%d (leaving the set) seconds=%.3f",
                domain_id,
                epoch,
                time.monotonic() - started,
            )
            return
        key, public = result
        if public.group_public_key != domain.public_key:
            log.error("resharing of domain %d produced another group key; aborting", domain_id)
            await self._vote_abort(event_id)
            return
        await asyncio.to_thread(self._store_share, domain_id, epoch, key, public)
        log.info(
            "resharing done domain=%d epoch=%d attempt=%d seconds=%.3f",
            domain_id,
            epoch,
            attempt,
            time.monotonic() - started,
        )
        try:
            await self.call(
                "vote_reshared",
                {
                    "key_event_id": event_id.to_json(),
                    "verifying_shares": contract_verifying_shares(public),
                },
            )
        except ContractCallFailed as exc:
            log.info(
                "vote_reshared domain=%d not counted: %s: %s", domain_id, exc.code, exc.message
            )

    # -- signing --------------------------------------------------------------------------

    def _configure_services(self, state: ContractState, me: int | None) -> None:
        """Serve exactly the keys in force (the serving epoch's) in the pool and for signing;
        the pool retires other epochs' keys with their presignatures."""
        serving = state.serving()
        if self.pool is None or self.signing is None:
            return
        desired: dict[tuple[int, int], tuple[KeyPackage, PublicKeyPackage]] = {}
        if me is not None and serving is not None:
            for domain in serving.keyset.domains:
                slot = (domain.domain_id, serving.epoch)
                pair = self._keys.get(slot)
                if pair is None:
                    try:
                        pair = self._load_share(*slot)
                    except (RecordNotFound, ShareFormatError):
                        continue
                    if pair[1].group_public_key != domain.public_key or pair[0].identifier != me:
                        log.error(
                            "stored share of domain %d epoch %d is not ours for the contract's "
                            "key; not used",
                            *slot,
                        )
                        continue
                desired[slot] = pair
        self._keys = desired
        epoch = serving.epoch if serving is not None else -1
        keys = {domain_id: pair for (domain_id, _), pair in desired.items()}
        self.pool.configure(me=me, epoch=epoch, keys=keys)
        self.signing.configure(me=me, epoch=epoch, keys=keys)

    def _serve_requests(self, state: ContractState, me: int) -> None:
        serving = state.serving()
        if serving is None:
            return
        participants = [m.participant_id for m in serving.parameters.members]
        if me not in participants:
            # A newcomer during a resharing: it signs once the new epoch is in force.
            for task in self._sign_tasks.values():
                task.cancel()
            self._sign_tasks.clear()
            return
        now = time.monotonic()
        for request_id, request in state.requests.items():
            if request_id in self._sign_tasks or request_id in self._finished:
                continue
            if (request.domain_id, serving.epoch) not in self._keys:
                continue
            seen = self._seen_at.setdefault(request_id, now)
            task = asyncio.create_task(
                self._lead(request, me, participants, serving.epoch, seen),
                name=f"sign-{request_id}",
            )
            self._sign_tasks[request_id] = task
        for request_id in list(self._sign_tasks):
            # A task whose `respond` is in flight finishes on its own: the event that the
            # request was answered often arrives before the answer to our own call.
            if request_id not in state.requests and request_id not in self._responding:
                self._sign_tasks.pop(request_id).cancel()
                self._seen_at.pop(request_id, None)
        for request_id in list(self._seen_at):
            if request_id < state.next_request_id and request_id not in state.requests:
                del self._seen_at[request_id]
        self._finished &= state.requests.keys()

    async def _lead(
        self, request: SignRequest, me: int, participants: list[int], epoch: int, seen: float
    ) -> None:
        rid = request.request_id
        try:
            delay = takeover_delay(
                rid, participants, me, self.mesh.connected_peers(), self.settings.takeover_timeout
            )
            wait = seen + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            assert self.signing is not None
            job = SignJob(
                request_id=rid,
                domain_id=request.domain_id,
                epoch=epoch,
                payload=request.payload,
                path=request.path,
                caller=request.account,
            )
            # Retried until it succeeds or the request leaves the pending set (answered by
            # another leader, or expired by the contract): then _serve_requests cancels us.
            # Peers that come back make new presignatures, so a later attempt can succeed.
            retry_delay = self.settings.takeover_timeout
            attempt = 0
            while True:
                try:
                    signature = await self.signing.lead(job)
                    self._responding.add(rid)
                    try:
                        await self.call(
                            "respond", {"request_id": rid, "signature": signature.hex()}
                        )
                    finally:
                        self._responding.discard(rid)
                except asyncio.CancelledError:
                    raise
                except ContractCallFailed as exc:
                    if exc.code == "RequestNotFound":
                        self._finish(rid)
                        return  # answered by another leader, or expired
                    self.metrics.sign_failures.labels(reason=exc.code).inc()
                    log.warning(
                        "respond to request %d rejected: %s: %s", rid, exc.code, exc.message
                    )
                except Exception as exc:
                    reason = str(getattr(exc, "code", type(exc).__name__))
                    self.metrics.sign_failures.labels(reason=reason).inc()
                    level = logging.WARNING if attempt % 10 == 0 else logging.DEBUG
                    log.log(
                        level, "leading sign request %d failed (attempt %d): %s", rid, attempt, exc
                    )
                else:
                    self._finish(rid)
                    self.metrics.signatures.labels(domain=str(request.domain_id)).inc()
                    self.metrics.sign_latency.observe(time.monotonic() - seen)
                    log.debug("signed request %d", rid)
                    return
                attempt += 1
                await asyncio.sleep(retry_delay)
                retry_delay = min(retry_delay * 2, SIGN_RETRY_MAX_DELAY)
        finally:
            if self._sign_tasks.get(rid) is asyncio.current_task():
                del self._sign_tasks[rid]

    def _finish(self, request_id: int) -> None:
        """The request is answered (by us or another leader): our last state may still list
        it until the `sign_responded` event arrives; it must not be led again meanwhile."""
        self._finished.add(request_id)
        if self._state is not None:
            self._state.requests.pop(request_id, None)

    async def is_pending(
        self, request_id: int, payload: bytes, path: str, domain_id: int, caller: str
    ) -> bool:
        """Whether the contract has this exact request pending (asked before a member spends
        a nonce on it).

        The leader may be a few milliseconds ahead of us: a request newer than our last state
        is looked for among the requests announced on our event stream, waiting briefly for
        it to arrive there, and only then asked of the ledger."""
        state = self._state
        request = state.requests.get(request_id) if state is not None else None
        if request is None and (state is None or request_id >= state.next_request_id):
            request = self._announced.get(request_id)
            if request is None:
                request = await self._wait_announced(request_id)
            if request is None:
                try:
                    value = await self.ledger.view("request", {"request_id": request_id})
                    request = SignRequest.from_json(value, "request")
                except (LedgerError, ContractError):
                    return False
        return (
            request is not None
            and request.payload == payload
            and request.path == path
            and request.domain_id == domain_id
            and request.account == caller
        )

    async def _wait_announced(self, request_id: int) -> SignRequest | None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._announce_waiters.setdefault(request_id, []).append(waiter)
        try:
            async with asyncio.timeout(ANNOUNCE_WAIT):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters = self._announce_waiters.get(request_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._announce_waiters[request_id]
        state = self._state
        found = self._announced.get(request_id)
        if found is None and state is not None:
            found = state.requests.get(request_id)
        return found

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self._state
        serving = state.serving() if state is not None else None
        connected = self.mesh.connected_peers()
        peers = [
            {
                "participant_id": pid,
                "account": info.account,
                "url": info.url,
                "connected": pid in connected,
            }
            for pid, info in sorted(self._peers.items())
            if pid != self._me
        ]
        keysets = {
            str(epoch): list(domains) for epoch, domains in sorted(self.keystore.keysets().items())
        }
        resharing_epoch = None
        if state is not None and isinstance(state.protocol, Resharing):
            resharing_epoch = state.protocol.epoch
        return {
            "migration": self._migration_status(state),
            "account": self.account,
            "tls_public_key": self.identity.tls_public_key.hex(),
            "signer_public_key": self.identity.signer_public_key.hex(),
            "role": self._decision.role.value if self._decision else "starting",
            "participant_id": self._me,
            "protocol_state": state.protocol.name if state is not None else "Unknown",
            "epoch": serving.epoch if serving is not None else None,
            "resharing_epoch": resharing_epoch,
            "threshold": serving.parameters.threshold if serving is not None else None,
            "participants": sorted(self._peers),
            "peers": peers,
            "connected_peers": sorted(connected),
            "presignatures": {
                str(d): n for d, n in sorted(self.keystore.presignature_counts().items())
            },
            "owned_presignatures": {
                f"{d}/{e}": n for (d, e), n in (self.pool.sizes() if self.pool else {}).items()
            },
            "keysets": keysets,
            "pending_requests": len(state.requests) if state is not None else 0,
            "ledger_height": self._height,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
        }

    def _migration_status(self, state: ContractState | None) -> dict[str, Any] | None:
        """The migration to this node, while one is open or being concluded."""
        migration = (
            migration_to_me(state, self.account, self.identity.tls_public_key)
            if state is not None
            else None
        )
        current = self._migration
        concluding = current is not None and not current.task.done()
        if migration is None and not concluding:
            return None
        if concluding:
            assert current is not None
            return {
                "started_height": current.started_height,
                "phase": "concluding",
                "epoch": int(current.keyset["epoch"]),
            }
        assert migration is not None
        return {
            "started_height": migration.started_height,
            "phase": "waiting_for_shares",
            "epoch": None,
        }

    def metrics_snapshot(self) -> MetricsSnapshot:
        state = self._state
        serving = state.serving() if state is not None else None
        connected = self.mesh.connected_peers()
        return MetricsSnapshot(
            protocol_state=state.protocol.name if state is not None else "Unknown",
            epoch=serving.epoch if serving is not None else -1,
            participant_id=self._me,
            participants=len(self._peers),
            peers={pid: pid in connected for pid in self._peers if pid != self._me},
            presignatures=self.keystore.presignature_counts(),
            owned_presignatures={
                d: n for (d, _), n in (self.pool.sizes() if self.pool else {}).items()
            },
            signature_shares=self.signing.stats.shares_served if self.signing else 0,
            key_shares=len(self.keystore.key_shares()),
            pending_requests=len(state.requests) if state is not None else 0,
        )
