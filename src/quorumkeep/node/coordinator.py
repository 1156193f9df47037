"""The coordinator: turns the contract's state into what this node does.

It follows the contract's events through the ledger's long-poll stream and, after every
batch, re-reads the ``state`` view and acts on it — never on an event alone, so a missed or
reordered event cannot lead it astray (rules: docs/node.md). A batch of sign events alone
only changes the pending requests, which the events carry in full: it is applied to the last
state read (under load that saves every node a state read per block).

This module is the run loop and a short dispatcher; each job is a component that owns its
state and takes narrow dependencies (a contract call, a state reader, the keystore):

- :class:`~quorumkeep.node.onboarding.NodeStanding` — the role from the onboarding table, the
  participant id and stand-by flag, decommissioning, candidacy;
- :class:`~quorumkeep.node.participants.ParticipantFollower` — the mesh and the
  presignatures follow the participant set;
- :class:`~quorumkeep.node.held_keys.HeldKeys` — the key shares and those in force;
- :class:`~quorumkeep.node.key_events.KeyEvents` — DKG while Initializing, resharing;
- :class:`~quorumkeep.node.sign_requests.SignRequests` — the pending sign requests, their
  leaders, and ``is_pending`` for members;
- :class:`~quorumkeep.node.migration.MigrationImports` — shares imported for a migration to
  this node, and its conclusion;
- :class:`~quorumkeep.node.standby.WarmStandby` — wrapped exports taken by this node (a warm
  standby keeps them); :class:`~quorumkeep.node.standby_feed.StandbyFeed` — a primary's
  pushes of every keyset to its warm standby.

Contract calls are signed by the node's signer key (a function-call key on the operator's
account); transient ledger errors are retried with bounded backoff (:mod:`quorumkeep.net.retry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from quorumkeep.contract.state import ContractState, Initializing, Resharing, Running
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy
from quorumkeep.node.attestation import NodeAttestation, marked_departing
from quorumkeep.node.backup_keys import tls_signer
from quorumkeep.node.calls import ContractAccess, ContractCaller, ContractPort, transient
from quorumkeep.node.config import NodeConfig
from quorumkeep.node.decisions import Onboarding, Role
from quorumkeep.node.emergency import EmergencyParts
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.key_events import KeyEvents, MeshKeyProtocols
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.mesh import Mesh
from quorumkeep.node.metrics import MetricsSnapshot, NodeMetrics
from quorumkeep.node.migration import MigrationImports
from quorumkeep.node.onboarding import Decommissioned, NodeStanding
from quorumkeep.node.participants import ParticipantFollower
from quorumkeep.node.protocols.presign import PresignaturePool
from quorumkeep.node.protocols.sign import SigningService
from quorumkeep.node.report import NodeReport
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.sign_requests import SignRequests
from quorumkeep.node.standby import WarmStandby
from quorumkeep.node.standby_feed import StandbyFeed

log = logging.getLogger("quorumkeep.node.coordinator")

STATE_RETRY_MAX_DELAY = 5.0
"""Longest wait between two reads of the state while the ledger stays down."""
__all__ = ["Coordinator", "CoordinatorSettings", "Decommissioned"]


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

    @property
    def ledger_policy(self) -> BackoffPolicy:
        return BackoffPolicy(
            self.ledger_backoff, max(self.ledger_backoff, STATE_RETRY_MAX_DELAY), jitter=0.5
        )


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
        contract: ContractPort | None = None,
    ) -> None:
        """``contract`` defaults to calls signed by the identity's signer key through
        ``ledger`` (:class:`ContractAccess`); ``ledger`` also gives the events and views."""
        self.ledger = ledger
        self.metrics = metrics
        self.settings = settings = settings or CoordinatorSettings()
        self.account = config.account
        if contract is None:
            signer = AccountSigner(config.account, SigningKey(identity.signer_seed))
            attempts, backoff = settings.ledger_attempts, settings.ledger_backoff
            caller = ContractCaller(ledger, signer, attempts=attempts, backoff=backoff)
            contract = ContractAccess(ledger, caller, metrics, settings.ledger_policy, attempts)
        self.contract: ContractPort = contract
        self.router = SessionRouter(mesh)
        self.held = HeldKeys(keystore)
        self.sign_requests = SignRequests(
            call=self.contract.call,
            view=ledger.view,
            connected=mesh.connected_peers,
            metrics=metrics,
            takeover_timeout=settings.takeover_timeout,
        )
        # Idle until the node takes part: _configure_services hands them its id and keys.
        self.pool = PresignaturePool(
            self.router, keystore, None, random_bytes, target=settings.presignature_target
        )
        self.signing = SigningService(
            self.router, keystore, self.pool, None, is_pending=self.sign_requests.is_pending
        )
        self.sign_requests.leader = self.signing
        self.attestation: NodeAttestation | None = None  # set by the node process
        self.standing = NodeStanding(
            account=self.account,
            tls_public_key=identity.tls_public_key,
            participant_info=lambda: identity.participant_info(config),
            metadata=keystore,
            held=self.held,
            call=self.contract.call,
            metrics=metrics,
            exit_on_decommission=settings.exit_on_decommission,
            evidence=self._evidence,
        )
        self.participants = ParticipantFollower(
            mesh=mesh, metadata=keystore, purge=self.pool.purge_involving, metrics=metrics
        )
        mesh.add_peer_handler(self.participants.peer_connected)
        self.key_events = KeyEvents(
            account=self.account,
            protocols=MeshKeyProtocols(self.router, random_bytes),
            held=self.held,
            keystore=keystore,
            call=self.contract.call,
            metrics=metrics,
            timeout=settings.key_event_timeout,
        )
        self.migration = MigrationImports(
            account=self.account,
            tls_public_key=identity.tls_public_key,
            signer_public_key=identity.signer_public_key,
            read_state=self.contract.read_state,
            call=self.contract.call,
            held=self.held,
            standing=self.standing,
            metrics=metrics,
            backoff=settings.ledger_backoff,
            on_settled=self._wake,
            keep_held=lambda state: self.standby.keep(state),
            evidence=self._evidence,
        )
        wrapping_key = identity.wrapping_key or KxKeyPair.generate(random_bytes)
        self.standby = WarmStandby(
            account=self.account,
            tls_public_key=identity.tls_public_key,
            wrapping_key=wrapping_key,
            enabled=config.warm_standby,
            read_state=self.contract.read_state,
            held=self.held,
            migration=self.migration,
            metrics=metrics,
        )
        self.feed: StandbyFeed | None = None
        if config.export.pushes:
            self.feed = StandbyFeed(
                account=self.account,
                export=config.export,
                source=lambda: tls_signer(identity.tls),
                wrapping_key=wrapping_key,
                held=self.held,
                metrics=metrics,
                random_bytes=random_bytes,
            )
        self._state: ContractState | None = None
        self._me: int | None = None
        self._height = -1
        self._changed = asyncio.Event()
        self._needs_state = True
        self._applied = False
        self._follower: asyncio.Task[None] | None = None
        self.emergency = EmergencyParts(
            self.account, self.held.load, self.contract.call, random_bytes
        )
        self.report = NodeReport(
            account=self.account,
            identity=identity,
            mesh=mesh,
            keystore=keystore,
            standing=self.standing,
            participants=self.participants,
            held=self.held,
            sign_requests=self.sign_requests,
            migration=self.migration,
            standby=self.standby,
            feed=self.feed,
            pool=self.pool,
            signing=self.signing,
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the first contract state was applied (the web API's backup endpoints
        answer ``contract_unavailable`` until then)."""
        return self._applied

    async def run(self) -> None:
        """Follow the contract until cancelled; raises :class:`Decommissioned`."""
        status = await self.contract.retried("status", self.ledger.status)
        self._height = int(status["height"])
        self._follower = asyncio.create_task(self._follow(self._height), name="ledger-follow")
        self._changed.set()
        backoff = Backoff(self.settings.ledger_policy)
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
                    await backoff.wait()
                    self._changed.set()
                else:
                    backoff.reset()
        finally:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower

    async def close(self) -> None:
        """Cancel every protocol run and background task (bounded)."""
        tasks = [
            *self.key_events.tasks(),
            *self.sign_requests.tasks(),
            *self.migration.tasks(),
            *(self.feed.tasks() if self.feed is not None else []),
        ]
        if self._follower is not None:
            tasks.append(self._follower)
        for task in tasks:
            task.cancel()
        await self.pool.close()
        await self.signing.close()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.emergency.close()
        if self.feed is not None:
            await self.feed.close()
        await self.contract.close()
        self.router.close()

    async def _follow(self, since: int) -> None:
        try:
            async for event in self.ledger.follow_events(since):
                self._height = max(self._height, event.height)
                self.contract.saw_height(event.height)
                if not self.sign_requests.note(event):
                    self._needs_state = True
                self._changed.set()
        finally:
            self._changed.set()  # wake run() so it sees the follower stopped

    def _wake(self) -> None:
        """Re-read the state at once (a component's background work changed it)."""
        self._needs_state = True
        self._changed.set()

    async def _refresh(self) -> None:
        """Act on what changed: any event but a sign request's coming or going means a full
        re-read of the ``state`` view; sign events alone are applied to the last state."""
        if self._needs_state or self._state is None:
            self._needs_state = False
            self.sign_requests.drop_events()
            try:
                state = await self.contract.read_state()
            except BaseException:
                self._needs_state = True
                raise
            await self._apply(state)
            self._applied = True
            return
        if not self.sign_requests.apply_events():
            self._wake()
            return
        if self._me is not None and self.standing.decision is not None:
            self.sign_requests.serve(self._state.serving(), self._me, self.held.in_force)

    # -- the dispatcher -------------------------------------------------------------------

    async def _evidence(self, state: ContractState | None) -> dict[str, Any]:
        """This node's attestation for a call that carries one (none without a source)."""
        return {} if self.attestation is None else await self.attestation.call_fields(state)

    async def _apply(self, state: ContractState) -> None:
        self._state = state
        if self.attestation is not None:
            self.attestation.observe(state)
        self.sign_requests.on_state(state)
        self.migration.contract_moved()  # a migration being concluded re-reads at once
        decision = self.standing.decide(state)
        if decision.wipe:
            await self._decommission(state, decision)
        me = decision.participant_id if decision.role is Role.PARTICIPANT else None
        if me is not None:
            self.standing.took_part(me)
        self._me = me
        await self.participants.follow(state, me)
        self._configure_services(state, me)
        if self.feed is not None:
            self.feed.update(state, me)
        if me is None:
            self._cancel_all()
            if decision.role is Role.NOT_PARTICIPANT:
                self.standing.left()
                self.held.delete_departed(state)
                if not self.standby.enabled:  # a warm standby is no candidate
                    await self.standing.offer_info(state)
            elif decision.role is Role.WAITING and await asyncio.to_thread(
                self.standby.keep, state
            ):
                pass  # a warm standby whose shares fit the keyset in force: nothing to settle
            else:
                await self.migration.settle_held_shares()
            return
        protocol = state.protocol
        if isinstance(protocol, Initializing):
            self.key_events.on_initializing(protocol, me)
        elif isinstance(protocol, Resharing):
            absent = marked_departing(state, protocol.previous.parameters, protocol.parameters)
            self.key_events.on_resharing(protocol, me, absent)
        else:
            self.key_events.cancel_all()
            if isinstance(protocol, Running):
                self.held.delete_obsolete(protocol)
                self.emergency.update(state)
        self.sign_requests.serve(state.serving(), me, self.held.in_force)

    async def _decommission(self, state: ContractState, decision: Onboarding) -> None:
        """A migration replaced us: nothing we hold may outlive that (backward secrecy).

        Everything that could write a share or presignature stops first — protocol runs,
        the mesh, presignature generation, an import or a migration being concluded — then
        the wipe."""
        async with self.migration.paused():
            self._cancel_all()
            self._me = None
            await self.participants.follow(state, None)
            self._configure_services(state, None)
            await self.pool.stop()
            await self.standing.decommission(decision.reason)

    def _cancel_all(self) -> None:
        self.key_events.cancel_all()
        self.sign_requests.cancel_all()

    def _configure_services(self, state: ContractState, me: int | None) -> None:
        """Serve exactly the keys in force (the serving epoch's) in the pool and for signing;
        the pool retires other epochs' keys with their presignatures."""
        in_force = self.held.select_in_force(state, me)
        serving = state.serving()
        epoch = serving.epoch if serving is not None else -1
        keys = {domain_id: pair for (domain_id, _), pair in in_force.items()}
        self.pool.configure(me=me, epoch=epoch, keys=keys)
        self.signing.configure(me=me, epoch=epoch, keys=keys)

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``GET /status`` (:class:`~quorumkeep.node.report.NodeReport`)."""
        return self.report.status(self._state, self._me, self._height)

    def metrics_snapshot(self) -> MetricsSnapshot:
        return self.report.metrics_snapshot(self._state, self._me)
