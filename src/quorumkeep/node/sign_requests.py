"""Sign-request leadership: the pending requests, who leads each, and whether one is pending.

This component owns the node's view of the contract's pending sign requests. It learns them
two ways: from a full read of the ``state`` view (:meth:`SignRequests.on_state`), and between
reads from the ``sign_requested`` / ``sign_responded`` / ``sign_failed`` events, which carry
a request in full — each event is parsed once, when it arrives (:meth:`SignRequests.note`),
and applied to the last state at the next batch (:meth:`SignRequests.apply_events`). Ids
grow: a ``sign_requested`` below the next request id is known already and never comes back
from an old event. An event that does not parse asks the coordinator for a full read.

Leading (rules: docs/node.md, "Signing"): every pending request whose key is in force gets a
task that waits its :func:`~quorumkeep.node.decisions.takeover_delay` (0 for the first leader
in line), then leads the request through the signing service and submits ``respond``,
retrying with bounded backoff until it succeeds or the request leaves the pending set
(answered by another leader: ``RequestNotFound``; or expired). A request answered by us or
by another leader is never led again while our state still lists it.

Members: before spending a nonce for a leader, the signing service asks
:meth:`SignRequests.is_pending` whether the contract has this exact request pending. The
leader may be a few milliseconds ahead of us, so a request newer than our last state is
looked for among those announced on our own event stream (waiting :data:`ANNOUNCE_WAIT` for
it), and only then asked of the ledger's ``request`` view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from quorumkeep.contract.errors import ContractError
from quorumkeep.contract.state import ContractState, Running, SignRequest
from quorumkeep.daemon.errors import error_code
from quorumkeep.ledger.client import LedgerEvent
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy, Uniform
from quorumkeep.node.calls import ContractCall, ViewReader
from quorumkeep.node.decisions import takeover_delay
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.protocols.sign import SignJob

log = logging.getLogger("quorumkeep.node.coordinator")

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


class Leader(Protocol):
    """What leading needs of the signing service."""

    async def lead(self, job: SignJob) -> bytes: ...


@dataclass(frozen=True)
class SignEvent:
    """A sign event, parsed once: ``request`` for a ``sign_requested`` that parsed."""

    kind: str
    request_id: int | None
    request: SignRequest | None

    @classmethod
    def parse(cls, event: LedgerEvent) -> SignEvent:
        request_id = event.data.get("request_id")
        request = None
        if event.kind == "sign_requested":
            with contextlib.suppress(KeyError, ValueError, ContractError):
                request = SignRequest.from_json(
                    {k: event.data[k] for k in SIGN_REQUEST_FIELDS}, "event"
                )
        return cls(event.kind, request_id if isinstance(request_id, int) else None, request)


class SignRequests:
    """The pending sign requests; leads those this node should, answers ``is_pending``."""

    def __init__(
        self,
        *,
        call: ContractCall,
        view: ViewReader,
        connected: Callable[[], Collection[int]],
        metrics: NodeMetrics,
        takeover_timeout: float,
        uniform: Uniform = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._call = call
        self._view = view
        self._connected = connected
        self._metrics = metrics
        self._takeover_timeout = takeover_timeout
        self._uniform = uniform
        self._clock = clock
        self.leader: Leader | None = None
        """The signing service; set once it exists (it asks :meth:`is_pending` of us)."""
        self._have_state = False
        self._pending: dict[int, SignRequest] = {}
        self._next_request_id = 0
        self._events: list[SignEvent] = []
        self._announced: dict[int, SignRequest] = {}
        self._announce_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._finished: set[int] = set()
        self._responding: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._seen_at: dict[int, float] = {}

    # -- learning the pending set -----------------------------------------------------------

    def note(self, event: LedgerEvent) -> bool:
        """Take a ledger event as it arrives; False if it is not a sign event."""
        if event.kind not in SIGN_EVENTS:
            return False
        parsed = SignEvent.parse(event)
        self._events.append(parsed)
        request_id = parsed.request_id
        if request_id is None:
            return True
        if parsed.kind != "sign_requested":
            self._announced.pop(request_id, None)
            return True
        self._seen_at.setdefault(request_id, self._clock())
        # Members are asked for shares as soon as the leader saw the request: remember it
        # now (is_pending), before the run loop gets to this batch.
        if parsed.request is not None:
            self._announced[request_id] = parsed.request
        for waiter in self._announce_waiters.pop(request_id, []):
            if not waiter.done():
                waiter.set_result(None)
        return True

    def drop_events(self) -> None:
        """A full state read follows: it covers every event noted so far."""
        self._events = []

    def on_state(self, state: ContractState) -> None:
        """A full read of the contract state: its pending requests replace ours."""
        self._have_state = True
        self._pending = dict(state.requests)
        self._next_request_id = state.next_request_id
        self._prune_announced()

    def apply_events(self) -> bool:
        """Apply the events noted since the last batch to the last state; False (nothing
        applied) if one does not parse and a full state read is needed."""
        events, self._events = self._events, []
        pending = dict(self._pending)
        next_id = self._next_request_id
        for event in events:
            if event.request_id is None:
                continue
            if event.kind == "sign_requested":
                if event.request_id >= next_id:
                    if event.request is None:
                        return False
                    pending[event.request_id] = event.request
                    next_id = event.request_id + 1
            else:
                pending.pop(event.request_id, None)
        self._pending, self._next_request_id = pending, next_id
        self._prune_announced()
        return True

    def _prune_announced(self) -> None:
        if self._have_state:
            for request_id in [r for r in self._announced if r < self._next_request_id]:
                del self._announced[request_id]

    # -- leading ----------------------------------------------------------------------------

    def serve(self, serving: Running | None, me: int, in_force: Callable[[int, int], bool]) -> None:
        """Start a leading task for each pending request (of a key in force), cancel those
        whose request left the pending set."""
        if serving is None:
            return
        participants = [m.participant_id for m in serving.parameters.members]
        if me not in participants:
            # A newcomer during a resharing: it signs once the new epoch is in force.
            self.cancel_all()
            return
        now = self._clock()
        for request_id, request in self._pending.items():
            if request_id in self._tasks or request_id in self._finished:
                continue
            if not in_force(request.domain_id, serving.epoch):
                continue
            seen = self._seen_at.setdefault(request_id, now)
            task = asyncio.create_task(
                self._lead(request, me, participants, serving.epoch, seen),
                name=f"sign-{request_id}",
            )
            self._tasks[request_id] = task
        for request_id in list(self._tasks):
            # A task whose `respond` is in flight finishes on its own: the event that the
            # request was answered often arrives before the answer to our own call.
            if request_id not in self._pending and request_id not in self._responding:
                self._tasks.pop(request_id).cancel()
                self._seen_at.pop(request_id, None)
        for request_id in list(self._seen_at):
            if request_id < self._next_request_id and request_id not in self._pending:
                del self._seen_at[request_id]
        self._finished &= self._pending.keys()

    def cancel_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    async def _lead(
        self, request: SignRequest, me: int, participants: list[int], epoch: int, seen: float
    ) -> None:
        rid = request.request_id
        try:
            delay = takeover_delay(rid, participants, me, self._connected(), self._takeover_timeout)
            wait = seen + delay - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            assert self.leader is not None
            job = SignJob(
                request_id=rid,
                domain_id=request.domain_id,
                epoch=epoch,
                payload=request.payload,
                path=request.path,
                caller=request.account,
            )
            # Retried until it succeeds or the request leaves the pending set (answered by
            # another leader, or expired by the contract): then serve() cancels us. Peers
            # that come back make new presignatures, so a later attempt can succeed.
            policy = BackoffPolicy(
                self._takeover_timeout, max(self._takeover_timeout, SIGN_RETRY_MAX_DELAY)
            )
            backoff = Backoff(policy, uniform=self._uniform)
            while True:
                if await self._attempt(request, job, seen, backoff.retries):
                    return
                await backoff.wait()
        finally:
            if self._tasks.get(rid) is asyncio.current_task():
                del self._tasks[rid]

    async def _attempt(self, request: SignRequest, job: SignJob, seen: float, attempt: int) -> bool:
        """One try at signing and responding; True when the request is answered."""
        rid = request.request_id
        assert self.leader is not None
        try:
            signature = await self.leader.lead(job)
            self._responding.add(rid)
            try:
                await self._call("respond", {"request_id": rid, "signature": signature.hex()})
            finally:
                self._responding.discard(rid)
        except asyncio.CancelledError:
            raise
        except ContractCallFailed as exc:
            if exc.code == "RequestNotFound":
                self._finish(rid)
                return True  # answered by another leader, or expired
            self._metrics.sign_failures.labels(reason=exc.code).inc()
            log.warning("respond to request %d rejected: %s: %s", rid, exc.code, exc.message)
        except Exception as exc:
            reason = error_code(exc)
            self._metrics.sign_failures.labels(reason=reason).inc()
            level = logging.WARNING if attempt % 10 == 0 else logging.DEBUG
            log.log(level, "leading sign request %d failed (attempt %d): %s", rid, attempt, exc)
        else:
            self._finish(rid)
            self._metrics.signatures.labels(domain=str(request.domain_id)).inc()
            self._metrics.sign_latency.observe(self._clock() - seen)
            log.debug("signed request %d", rid)
            return True
        return False

    def _finish(self, request_id: int) -> None:
        """The request is answered (by us or another leader): our last state may still list
        it until the `sign_responded` event arrives; it must not be led again meanwhile."""
        self._finished.add(request_id)
        self._pending.pop(request_id, None)

    # -- members ----------------------------------------------------------------------------

    async def is_pending(
        self, request_id: int, payload: bytes, path: str, domain_id: int, caller: str
    ) -> bool:
        """Whether the contract has this exact request pending (asked before a member spends
        a nonce on it)."""
        request = self._pending.get(request_id)
        if request is None and (not self._have_state or request_id >= self._next_request_id):
            request = self._announced.get(request_id)
            if request is None:
                request = await self._wait_announced(request_id)
            if request is None:
                try:
                    value = await self._view("request", {"request_id": request_id})
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
        found = self._announced.get(request_id)
        if found is None:
            found = self._pending.get(request_id)
        return found

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"pending_requests": len(self._pending)}

    @property
    def pending_count(self) -> int:
        return len(self._pending)
