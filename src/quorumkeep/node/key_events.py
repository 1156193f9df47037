"""Key events: the distributed key generations and resharings the contract asks of this node.

Rules (docs/node.md, "Key events"):

- Initializing: one PedPoP DKG per domain being generated and not yet voted on by our
  account; session id ``dkg-{domain}-{epoch}-{attempt}`` (from the key event id). The share is
  stored per (domain, epoch) and a marker records the attempt, so a node restarted between
  storing and voting votes without running it again; then ``vote_pk``. A failed run votes
  ``vote_abort_key_event``.
- Resharing: every member of the old or new set runs ``reshare-{domain}-{epoch}-{attempt}``
  for each incomplete event (a member of the new set until it voted; an old holder leaving the
  set until it dealt). Old holders deal from their stored share; a newcomer, or a holder that
  lost its share, checks every dealer against the contract's public package. The new share
  must have the contract's group key; it is stored, then ``vote_reshared``. A failed run, or
  one producing another group key, votes to abort.
- A run whose event is no longer wanted (completed, aborted, the protocol moved on) is
  cancelled. Each run is bounded by ``key_event_timeout``.

The runs themselves (:class:`KeyProtocols`) are the mesh protocols of
:mod:`quorumkeep.node.protocols`; tests pass other implementations of the same interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

from quorumkeep.contract.records import verifying_shares_json
from quorumkeep.contract.state import Initializing, KeyEventId, Participants, Resharing
from quorumkeep.crypto.group import Element, RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.ledger.errors import ContractCallFailed
from quorumkeep.node.calls import ContractCall
from quorumkeep.node.held_keys import HeldKeys, KeyPair
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError, RecordNotFound
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.protocols.dkg import run_dkg
from quorumkeep.node.protocols.reshare import run_reshare
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.shares import ShareFormatError

log = logging.getLogger("quorumkeep.node.coordinator")

META_KEYGEN = "keygen_attempt/{domain}/{epoch}"
"""Keystore metadata: the DKG attempt whose share is stored for (domain, epoch)."""


def contract_verifying_shares(public: PublicKeyPackage) -> dict[str, str]:
    """A key's verifying shares as the contract's vote_pk / vote_reshared take them."""
    return verifying_shares_json(tuple(sorted(public.verifying_shares.items())))


@dataclass(frozen=True)
class TaskKey:
    """One protocol run: its kind and the key event it serves."""

    kind: Literal["dkg", "reshare"]
    event_id: KeyEventId

    def __str__(self) -> str:
        e = self.event_id
        return f"{self.kind}-{e.domain_id}-{e.epoch}-{e.attempt}"


class KeyProtocols(Protocol):
    """The two key protocols, bound to this node's mesh sessions and randomness."""

    async def dkg(
        self, *, session_id: str, me: int, participants: list[int], threshold: int, timeout: float
    ) -> KeyPair: ...

    async def reshare(
        self,
        *,
        session_id: str,
        me: int,
        old: Participants,
        new: Participants,
        old_public: PublicKeyPackage,
        old_key: KeyPackage | None,
        group_public_key: Element,
        timeout: float,
        attempt: int,
        absent: Collection[int] = (),
    ) -> KeyPair | None: ...


class MeshKeyProtocols:
    """:class:`KeyProtocols` over the node's mesh (:func:`run_dkg`, :func:`run_reshare`)."""

    def __init__(self, router: SessionRouter, random_bytes: RandomBytes) -> None:
        self._router = router
        self._random_bytes = random_bytes

    async def dkg(
        self, *, session_id: str, me: int, participants: list[int], threshold: int, timeout: float
    ) -> KeyPair:
        return await run_dkg(
            self._router,
            session_id=session_id,
            me=me,
            participants=participants,
            threshold=threshold,
            random_bytes=self._random_bytes,
            timeout=timeout,
        )

    async def reshare(
        self,
        *,
        session_id: str,
        me: int,
        old: Participants,
        new: Participants,
        old_public: PublicKeyPackage,
        old_key: KeyPackage | None,
        group_public_key: Element,
        timeout: float,
        attempt: int,
        absent: Collection[int] = (),
    ) -> KeyPair | None:
        return await run_reshare(
            self._router,
            session_id=session_id,
            me=me,
            old_participants=[m.participant_id for m in old.members],
            old_threshold=old.threshold,
            old_public=old_public,
            old_key=old_key,
            new_participants=[m.participant_id for m in new.members],
            new_threshold=new.threshold,
            group_public_key=group_public_key,
            random_bytes=self._random_bytes,
            timeout=timeout,
            attempt=attempt,
            absent=absent,
        )


class KeyEvents:
    """The node's DKG and resharing runs, one task per wanted key event."""

    def __init__(
        self,
        *,
        account: str,
        protocols: KeyProtocols,
        held: HeldKeys,
        keystore: Keystore,
        call: ContractCall,
        metrics: NodeMetrics,
        timeout: float,
    ) -> None:
        self._account = account
        self._protocols = protocols
        self._held = held
        self._keystore = keystore
        self._call = call
        self._metrics = metrics
        self._timeout = timeout
        self._tasks: dict[TaskKey, asyncio.Task[None]] = {}
        self._reshare_done: set[KeyEventId] = set()

    # -- what runs ----------------------------------------------------------------------------

    def on_initializing(self, initializing: Initializing, me: int) -> None:
        participants = [m.participant_id for m in initializing.running.parameters.members]
        threshold = initializing.running.parameters.threshold
        wanted = set()
        for event in initializing.generating:
            if event.complete or self._account in event.votes:
                continue
            key = TaskKey("dkg", event.id)
            wanted.add(key)
            self._start(key, partial(self._run_dkg, event.id, me, participants, threshold))
        self._cancel(lambda key: key.kind == "dkg" and key not in wanted)

    def on_resharing(self, resharing: Resharing, me: int, absent: Collection[int] = ()) -> None:
        """Run every resharing event we still owe. ``absent`` departing old holders (the
        contract marked them: their connections are refused) are left out of the sessions."""
        in_new = resharing.parameters.get(self._account) is not None
        wanted = set()
        for event in resharing.resharing:
            if event.complete:
                continue
            if in_new and self._account in event.votes:
                continue
            if not in_new and event.id in self._reshare_done:
                continue
            key = TaskKey("reshare", event.id)
            wanted.add(key)
            self._start(key, partial(self._run_reshare, resharing, event.id, me, tuple(absent)))
        self._cancel(lambda key: key.kind == "reshare" and key not in wanted)

    def cancel_all(self) -> None:
        self._cancel(lambda key: True)

    def running(self) -> list[TaskKey]:
        return sorted(self._tasks, key=str)

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    def _start(self, key: TaskKey, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if key in self._tasks:
            return
        task = asyncio.create_task(run(), name=f"coordinator-{key}")
        self._tasks[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is finished:
                del self._tasks[key]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("task %s failed: %r", key, finished.exception())

        task.add_done_callback(done)

    def _cancel(self, predicate: Callable[[TaskKey], bool]) -> None:
        for key, task in list(self._tasks.items()):
            if predicate(key):
                task.cancel()
                del self._tasks[key]

    # -- key generation -------------------------------------------------------------------------

    async def _run_dkg(
        self, event_id: KeyEventId, me: int, participants: list[int], threshold: int
    ) -> None:
        domain_id, epoch, attempt = event_id.domain_id, event_id.epoch, event_id.attempt
        marker = META_KEYGEN.format(domain=domain_id, epoch=epoch)
        public: PublicKeyPackage | None = None
        if self._keystore.get_metadata(marker) == str(attempt):
            # We finished this very attempt before a restart but did not get to vote.
            with contextlib.suppress(RecordNotFound, ShareFormatError):
                public = self._held.load(domain_id, epoch)[1]
        if public is None:
            started = time.monotonic()
            log.info("keygen started domain=%d epoch=%d attempt=%d", domain_id, epoch, attempt)
            try:
                key, public = await self._protocols.dkg(
                    session_id=f"dkg-{domain_id}-{epoch}-{attempt}",
                    me=me,
                    participants=participants,
                    threshold=threshold,
                    timeout=self._timeout,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.key_events.labels(kind="dkg", outcome="failed").inc()
                log.warning(
                    "keygen failed domain=%d epoch=%d attempt=%d: %s; voting to abort",
                    domain_id,
                    epoch,
                    attempt,
                    exc,
                )
                await self._vote_abort(event_id)
                return
            await asyncio.to_thread(self._held.store, domain_id, epoch, key, public)
            self._keystore.set_metadata(marker, str(attempt))
            self._metrics.key_events.labels(kind="dkg", outcome="ok").inc()
            log.info(
                "keygen done domain=%d epoch=%d attempt=%d public_key=%s seconds=%.3f",
                domain_id,
                epoch,
                attempt,
                public.group_public_key.hex(),
                time.monotonic() - started,
            )
        try:
            await self._call(
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
            await self._call("vote_abort_key_event", {"key_event_id": event_id.to_json()})
        except ContractCallFailed as exc:
            # Someone else aborted it already, or it completed: either way nothing to do.
            log.info("vote_abort_key_event not applied: %s", exc.code)

    # -- resharing ------------------------------------------------------------------------------

    async def _run_reshare(
        self, resharing: Resharing, event_id: KeyEventId, me: int, absent: tuple[int, ...]
    ) -> None:
        old, new = resharing.previous.parameters, resharing.parameters
        domain_id, epoch, attempt = event_id.domain_id, event_id.epoch, event_id.attempt
        old_epoch = resharing.previous.epoch
        domain = resharing.previous.keyset.get(domain_id)
        assert domain is not None
        old_key: KeyPackage | None = None
        old_public: PublicKeyPackage | None = None
        if old.get(self._account) is not None:
            try:
                old_key, old_public = await asyncio.to_thread(self._held.load, domain_id, old_epoch)
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
        started = time.monotonic()
        log.info("resharing started domain=%d epoch=%d attempt=%d", domain_id, epoch, attempt)
        try:
            result = await self._protocols.reshare(
                session_id=f"reshare-{domain_id}-{epoch}-{attempt}",
                me=me,
                old=old,
                new=new,
                old_public=old_public,
                old_key=old_key,
                group_public_key=domain.public_key,
                timeout=self._timeout,
                attempt=attempt,
                absent=absent,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._metrics.key_events.labels(kind="reshare", outcome="failed").inc()
            log.warning(
                "resharing failed domain=%d epoch=%d attempt=%d: %s; voting to abort",
                domain_id,
                epoch,
                attempt,
                exc,
            )
            await self._vote_abort(event_id)
            return
        self._metrics.key_events.labels(kind="reshare", outcome="ok").inc()
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
        await asyncio.to_thread(self._held.store, domain_id, epoch, key, public)
        log.info(
            "resharing done domain=%d epoch=%d attempt=%d seconds=%.3f",
            domain_id,
            epoch,
            attempt,
            time.monotonic() - started,
        )
        try:
            await self._call(
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
