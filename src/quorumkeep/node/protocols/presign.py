"""Owner-led presignatures: FROST round one done ahead of time, in batches.

Every node *owns* the presignatures it will later lead signatures with. For a key
(domain_id, epoch) with threshold t, the owner picks a signer set of itself and t-1
connected peers (leaving out the peers its pool already depends on most, so that the loss of
any one peer leaves usable presignatures; ``_next_batch``) and runs a batch
(formats: docs/node-protocols.md)::

    owner → members   presign_request(domain, epoch, participants, count)
    members           frost.commit × count; nonces kept in memory
    members → owner   presign_commitments (count × hiding ‖ binding)
    owner             validates every member commitment (the one place they are checked
                      before signing), builds the full commitment lists
    owner → members   presign_confirm (every participant's commitments)
    members           store each nonce pair sealed with the full list, one transaction
    members → owner   presign_stored
    owner             stores its own nonces the same way: the presignatures are usable

Presignature ids are ``<owner>:<batch>:<k>`` (batch: 16 random hex digits); the batch's
session id is ``<owner>:<batch>``. A member holds at most ``max_held_per_owner`` presignatures
of one owner and key (confirmed, plus those of its open batches): an owner that asks and
never signs is refused (``too_many_presignatures``) instead of filling the member's disk.
A member accepts a batch only from a participant of that
key, naming itself and the sender in a set of exactly t participants of the key, with an id
that names the sender as owner. A batch that fails anywhere is dropped whole; whatever one
side stored of it is never usable (the owner never signs with it) and is removed with its
epoch or by a purge.

Nonces never touch the disk unsealed, and each is deleted durably before a share computed
with it leaves the node (``Keystore.take_presignature``; protocols/sign.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from quorumkeep.crypto import frost
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import RandomBytes, element_decode
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.encoding.fields import parse_decimal
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.keystore_records import Presignature, PresignatureInfo
from quorumkeep.node.messages import (
    CHANNEL_PRESIGN,
    MAX_BATCH,
    Message,
    PresignCommitments,
    PresignConfirm,
    PresignRequest,
    PresignStored,
    Refusal,
    encode,
)
from quorumkeep.node.protocols.errors import InvalidSessionParameters
from quorumkeep.node.sessions import Session, SessionRouter

log = logging.getLogger("quorumkeep.node.protocols.presign")

KeyId = tuple[int, int]
"""(domain_id, epoch)."""

_M = TypeVar("_M", bound=Message)

Usable = Callable[[tuple[int, ...]], bool]
"""Whether a presignature with these participants can be used now (sign.py's choice)."""


def presignature_owner(presignature_id: str) -> int | None:
    """The owner named by an id ``<owner>:<batch>:<k>``, or None for another shape."""
    head, sep, _ = presignature_id.partition(":")
    try:
        return parse_decimal(head, 20) if sep else None
    except ValueError:
        return None


def exposed(peers: Sequence[int], need: int, held: int, load: Mapping[int, int]) -> list[int]:
    """The ``peers`` every one of an owner's ``held`` presignatures includes (``load``: how
    many include each), so that losing one would leave the owner none — among peers a batch
    of ``need`` could leave out (more candidates than it takes); empty otherwise."""
    if len(peers) <= need:
        return []
    return [p for p in peers if load.get(p, 0) >= held]


def _nonce_bytes(nonces: frost.SigningNonces) -> bytes:
    return nonces.hiding + nonces.binding


@dataclass
class PoolStats:
    batches_started: int = 0
    batches_completed: int = 0
    batches_failed: int = 0
    presignatures_generated: int = 0
    member_batches_stored: int = 0
    member_refusals: int = 0


@dataclass(eq=False)
class _Key:
    domain_id: int
    epoch: int
    key: KeyPackage
    public: PublicKeyPackage
    target: int
    owned: OrderedDict[str, PresignatureInfo] = field(default_factory=OrderedDict)
    in_flight: int = 0
    flying: Counter[int] = field(default_factory=Counter)
    """Presignatures in flight per member peer (for :meth:`PresignaturePool._next_batch`)."""
    batches: int = 0
    rotation: int = 0
    retry_at: float = 0.0


@dataclass(eq=False)
class _PendingBatch:
    expires: float
    domain_id: int
    epoch: int
    participants: tuple[int, ...]
    nonces: list[frost.SigningNonces] = field(repr=False)
    count: int = 0
    generation: int = 0
    """The pool's purge generation when the batch was accepted."""


class _BatchFailed(Exception):
    def __init__(self, reason: str, members: Iterable[int] = ()) -> None:
        super().__init__(reason)
        self.members = frozenset(members)


class PresignaturePool:
    """Owner side (background generation, claims for signing) and member side of presigning.

    ``set_key`` starts serving a key (generation towards ``target`` owned presignatures once
    ``start`` ran); ``remove_key`` stops and deletes that key's presignatures. Keys are what
    signing.SigningService's member side looks up, too.
    """

    def __init__(
        self,
        router: SessionRouter,
        keystore: Keystore,
        me: int | None,
        random_bytes: RandomBytes = os.urandom,
        *,
        target: int = 128,
        batch_size: int = 32,
        max_batches_in_flight: int = 2,
        request_timeout: float = 5.0,
        retry_delay: float = 0.5,
        max_pending_per_owner: int = 4,
        max_held_per_owner: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise InvalidSessionParameters(f"batch_size must be in [1, {MAX_BATCH}]")
        self.router = router
        self.keystore = keystore
        self.me = me
        self.random_bytes = random_bytes
        self.default_target = target
        self.batch_size = batch_size
        self.max_batches_in_flight = max_batches_in_flight
        self.request_timeout = request_timeout
        self.retry_delay = retry_delay
        self.max_pending_per_owner = max_pending_per_owner
        # An honest owner holds at most its target plus the batches it has in flight; twice
        # the target leaves room for a peer configured with a larger one.
        self.max_held_per_owner = (
            2 * target + max_batches_in_flight * batch_size
            if max_held_per_owner is None
            else max_held_per_owner
        )
        self._clock = clock
        self._keys: dict[KeyId, _Key] = {}
        self._epoch: int | None = None
        self._pending: dict[tuple[int, str], _PendingBatch] = {}
        self._member_backoff: dict[int, float] = {}
        self._purges: list[tuple[int, frozenset[int]]] = []
        self._purge_generation = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._cleanup_tasks: set[asyncio.Task[None]] = set()
        self._member_tasks: set[asyncio.Task[None]] = set()
        self.stats = PoolStats()
        router.serve(CHANNEL_PRESIGN, self._serve)

    # -- keys

    def configure(
        self,
        *,
        me: int | None,
        epoch: int,
        keys: Mapping[int, tuple[KeyPackage, PublicKeyPackage]],
        participants: Iterable[int] | None = None,
        threshold: int | None = None,
    ) -> None:
        """Serve exactly ``keys`` (domain id → key material) of ``epoch`` and start generating.

        Cheap when nothing changed (call it after every contract refresh). Keys of other
        epochs are retired with their presignatures; a domain merely missing from ``keys``
        stops being served but keeps its presignatures. ``participants`` and ``threshold``
        are implied by the public key packages and only checked.
        """
        if me != self.me:
            self.me = me
            self._keys.clear()
            self._pending.clear()
        if me is None:
            return
        for domain_id, (key, public) in keys.items():
            if threshold is not None and public.threshold != threshold:
                raise InvalidSessionParameters(f"domain {domain_id}: threshold differs")
            if participants is not None and sorted(participants) != public.identifiers:
                raise InvalidSessionParameters(f"domain {domain_id}: participants differ")
            self.set_key(domain_id, epoch, key, public)
        for domain_id, key_epoch in list(self._keys):
            if key_epoch != epoch:
                self.remove_key(domain_id, key_epoch)
            elif domain_id not in keys:
                self.remove_key(domain_id, key_epoch, delete=False)
        if epoch != self._epoch:
            # presignatures of earlier epochs left from before a restart are useless now
            self._epoch = epoch
            self._background_cleanup(self._delete_older(sorted(keys), epoch))
        self.start()

    def set_key(
        self,
        domain_id: int,
        epoch: int,
        key: KeyPackage,
        public: PublicKeyPackage,
        *,
        target: int | None = None,
    ) -> None:
        """Serve (domain_id, epoch) with this key; owned presignatures in the keystore count."""
        if key.identifier != self.me or public.verifying_shares.get(key.identifier) != (
            key.verifying_share
        ):
            raise InvalidSessionParameters("the key package is not this participant's")
        if key.group_public_key != public.group_public_key:
            raise InvalidSessionParameters("key package and public key package differ")
        target = self.default_target if target is None else target
        existing = self._keys.get((domain_id, epoch))
        if existing is not None and existing.key == key and existing.public == public:
            if existing.target != target:
                existing.target = target
                self._wake.set()
            return
        entry = _Key(domain_id, epoch, key, public, target)
        if existing is not None:
            entry.owned = existing.owned
        else:
            prefix = f"{self.me}:"
            for info in self.keystore.presignatures(domain_id, epoch):
                if info.id.startswith(prefix) and set(info.participants) <= set(
                    public.verifying_shares
                ):
                    entry.owned[info.id] = info
        self._keys[(domain_id, epoch)] = entry
        self._wake.set()

    def remove_key(self, domain_id: int, epoch: int, *, delete: bool = True) -> None:
        """Stop serving (domain_id, epoch) and (``delete``) delete its presignatures, owned
        or not, in the background."""
        self._keys.pop((domain_id, epoch), None)
        for pending_key, pending in list(self._pending.items()):
            if (pending.domain_id, pending.epoch) == (domain_id, epoch):
                del self._pending[pending_key]
        if delete:
            self._background_cleanup(self._delete_key_presignatures(domain_id, epoch))

    def _background_cleanup(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._cleanup_tasks.add(task)
        task.add_done_callback(self._cleanup_tasks.discard)

    async def _delete_key_presignatures(self, domain_id: int, epoch: int) -> None:
        def delete() -> int:
            if (domain_id, epoch) in self._keys:  # served again meanwhile: keep
                return 0
            return self.keystore.delete_presignatures(domain_id, epoch=epoch)

        removed = await asyncio.to_thread(delete)
        log.info("deleted %s presignatures of domain %s epoch %s", removed, domain_id, epoch)

    async def _delete_older(self, domain_ids: list[int], epoch: int) -> None:
        def delete() -> int:
            if self._epoch != epoch:
                return 0
            return sum(
                self.keystore.delete_presignatures(domain_id, before_epoch=epoch)
                for domain_id in domain_ids
            )

        removed = await asyncio.to_thread(delete)
        if removed:
            log.info("deleted %s presignatures of epochs before %s", removed, epoch)

    def key(self, domain_id: int, epoch: int) -> tuple[KeyPackage, PublicKeyPackage] | None:
        entry = self._keys.get((domain_id, epoch))
        return None if entry is None else (entry.key, entry.public)

    def sizes(self) -> dict[KeyId, int]:
        """Owned, usable presignatures per (domain_id, epoch)."""
        return {k: len(entry.owned) for k, entry in sorted(self._keys.items())}

    # -- purge

    def purge_involving(self, participant_ids: Iterable[int]) -> int:
        """Delete every presignature (owned or as a member) that one of ``participant_ids``
        takes part in; return how many the keystore deleted. Batches running now that
        involve them are discarded when they finish."""
        ids = frozenset(participant_ids)
        if not ids:
            return 0
        removed = self.keystore.purge_presignatures_involving(ids)
        for entry in self._keys.values():
            for pid in [p for p, info in entry.owned.items() if ids & set(info.participants)]:
                del entry.owned[pid]
        for pending_key, pending in list(self._pending.items()):
            if ids & set(pending.participants):
                del self._pending[pending_key]
        self._purge_generation += 1
        self._purges.append((self._purge_generation, ids))
        del self._purges[:-64]
        self._wake.set()
        log.info("purged %s presignatures involving %s", removed, sorted(ids))
        return removed

    def _purged_since(self, generation: int) -> frozenset[int]:
        out: set[int] = set()
        for g, ids in self._purges:
            if g > generation:
                out |= ids
        if self._purges and self._purges[0][0] > generation + 1:
            return frozenset({-1})  # history truncated: treat everything as purged
        return frozenset(out)

    # -- claims (signing)

    def claim(self, domain_id: int, epoch: int, usable: Usable) -> PresignatureInfo | None:
        """Remove and return the oldest owned presignature whose participants are usable."""
        entry = self._keys.get((domain_id, epoch))
        if entry is None:
            return None
        for pid, info in entry.owned.items():
            if usable(info.participants):
                del entry.owned[pid]
                self._wake.set()
                return info
        return None

    async def claim_wait(
        self, domain_id: int, epoch: int, usable: Usable, timeout: float
    ) -> PresignatureInfo | None:
        """``claim``, waiting up to ``timeout`` s for the generator to produce a usable one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            info = self.claim(domain_id, epoch, usable)
            if info is not None:
                return info
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._changed.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 0.25)):
                    await self._changed.wait()

    async def wait_for(self, domain_id: int, epoch: int, count: int, timeout: float) -> None:
        """Until at least ``count`` owned presignatures exist (TimeoutError otherwise)."""
        async with asyncio.timeout(timeout):
            while self.sizes().get((domain_id, epoch), 0) < count:
                self._changed.clear()
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await self._changed.wait()

    # -- background generation

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._generate(), name=f"presign-{self.me}")

    async def close(self) -> None:
        """Stop generating and serving (bounded); the keystore stays open (the caller's)."""
        self.router.unserve(CHANNEL_PRESIGN, self._serve)
        await self.stop()

    async def stop(self) -> None:
        tasks = [
            t
            for t in (self._task, *self._batch_tasks, *self._cleanup_tasks, *self._member_tasks)
            if t
        ]
        self._task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._pending.clear()

    async def _generate(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock()
            for entry in list(self._keys.values()):
                while (
                    self._wants_batch(entry)
                    and entry.batches < self.max_batches_in_flight
                    and entry.retry_at <= now
                ):
                    batch = self._next_batch(entry)
                    if batch is None:
                        entry.retry_at = now + self.retry_delay
                        break
                    self._spawn(entry, *batch)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.retry_delay):
                    await self._wake.wait()

    def _next_batch(self, entry: _Key) -> tuple[list[int], int] | None:
        """The next batch's t-1 members among the connected peers (peers in backoff skipped)
        and its size; None while too few peers are connected.

        The pool should survive the loss of any one peer: a leader whose every presignature
        involves a peer that is down cannot lead until that peer returns. So a batch leaves
        out the peers the pool already depends on most (owned and in-flight presignatures
        that include them; rotation breaks ties), and batches are small enough that
        ``target`` holds one batch per way of leaving a peer out: with p peers of which t-1
        take part, ceil(p / (p - t + 1)) batches (at most ``batch_size`` each).
        """
        peers = self._candidates(entry)
        need = entry.public.threshold - 1
        if len(peers) < need:
            return None
        load = self._load(entry)
        start = entry.rotation % len(peers)
        entry.rotation += 1
        order = sorted(peers[start:] + peers[:start], key=lambda p: load[p])  # stable
        spare = len(peers) - need
        count = self.batch_size
        if spare > 0:
            count = max(1, min(count, entry.target // -(-len(peers) // spare)))
        return sorted(order[:need]), count

    def _candidates(self, entry: _Key) -> list[int]:
        """The peers a batch may take now: connected holders of the key, not in back-off."""
        now = self._clock()
        connected = self.router.connected_peers()
        return [
            p
            for p in entry.public.identifiers
            if p != self.me and p in connected and self._member_backoff.get(p, 0.0) <= now
        ]

    def _load(self, entry: _Key) -> Counter[int]:
        """Per peer, the owner's presignatures (stored and in flight) that include it."""
        load = Counter(entry.flying)
        for info in entry.owned.values():
            load.update(p for p in info.participants if p != self.me)
        return load

    def _wants_batch(self, entry: _Key) -> bool:
        """Below the target; or, up to twice the target, while the loss of a peer a batch
        could leave out would leave no presignature (``exposed``): batches that failed or
        ran while a peer was away can fill the target with sets that all include one peer."""
        held = len(entry.owned) + entry.in_flight
        if held < entry.target:
            return True
        if held + self.batch_size > 2 * entry.target:
            return False
        peers = self._candidates(entry)
        return exposed(peers, entry.public.threshold - 1, held, self._load(entry)) != []

    def _spawn(self, entry: _Key, members: list[int], count: int) -> None:
        self._reserve(entry, members, count)
        task = asyncio.create_task(self._run_batch(entry, members, count))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    @staticmethod
    def _reserve(entry: _Key, members: list[int], count: int) -> None:
        entry.in_flight += count
        entry.batches += 1
        entry.flying.update(dict.fromkeys(members, count))

    async def fill(self, domain_id: int, epoch: int, count: int | None = None) -> int:
        """Run one batch now with the next signer set; return how many presignatures it added."""
        entry = self._keys.get((domain_id, epoch))
        if entry is None:
            raise InvalidSessionParameters(f"no key for domain {domain_id} epoch {epoch}")
        batch = self._next_batch(entry)
        if batch is None:
            return 0
        members = batch[0]
        count = self.batch_size if count is None else count
        before = len(entry.owned)
        self._reserve(entry, members, count)
        await self._run_batch(entry, members, count)
        return max(0, len(entry.owned) - before)

    async def _run_batch(self, entry: _Key, members: list[int], count: int) -> None:
        self.stats.batches_started += 1
        try:
            infos = await self._batch(entry, members, count)
        except _BatchFailed as exc:
            self.stats.batches_failed += 1
            now = self._clock()
            for member in exc.members:
                self._member_backoff[member] = now + self.retry_delay * 4
            if not exc.members:
                entry.retry_at = now + self.retry_delay
            log.info(
                "presignature batch for domain %s epoch %s with %s failed: %s",
                entry.domain_id,
                entry.epoch,
                members,
                exc,
            )
        except Exception:
            self.stats.batches_failed += 1
            entry.retry_at = self._clock() + self.retry_delay
            log.exception("presignature batch failed")
        else:
            if self._keys.get((entry.domain_id, entry.epoch)) is entry:
                for info in infos:
                    entry.owned[info.id] = info
                self.stats.batches_completed += 1
                self.stats.presignatures_generated += len(infos)
        finally:
            entry.in_flight -= count
            entry.batches -= 1
            entry.flying.subtract(dict.fromkeys(members, count))
            self._changed.set()
            self._wake.set()

    async def _batch(self, entry: _Key, members: list[int], count: int) -> list[PresignatureInfo]:
        generation = self._purge_generation
        me = entry.key.identifier  # set_key checked it is self.me
        batch = self.random_bytes(8).hex()
        sid = f"{me}:{batch}"
        participants = tuple(sorted([*members, me]))
        with self.router.open(CHANNEL_PRESIGN, sid, members) as session:
            request = PresignRequest(sid, entry.domain_id, entry.epoch, participants, count)
            reached = await session.broadcast(members, request)
            if reached != set(members):
                raise _BatchFailed("not connected", set(members) - reached)
            share = entry.key.signing_share
            own = await asyncio.to_thread(
                lambda: [frost.commit(share, self.random_bytes) for _ in range(count)]
            )
            replies = await self._collect(session, members, PresignCommitments, "commitments")
            commitments: dict[int, tuple[frost.SigningCommitments, ...]] = {
                me: tuple(c for _, c in own)
            }
            for member, reply in replies.items():
                if len(reply.commitments) != count:
                    raise _BatchFailed(f"participant {member} sent a wrong number", [member])
                commitments[member] = reply.commitments
            bad = await asyncio.to_thread(_invalid_commitments, replies)
            if bad is not None:
                log.warning("participant %s sent invalid nonce commitments", bad)
                raise _BatchFailed(f"participant {bad} sent invalid commitments", [bad])
            reached = await session.broadcast(members, PresignConfirm(sid, commitments))
            if reached != set(members):
                raise _BatchFailed("not connected", set(members) - reached)
            await self._collect(session, members, PresignStored, "stored")
        purged = self._purged_since(generation)
        if purged & set(participants) or -1 in purged:
            raise _BatchFailed("a participant was purged while the batch ran")
        created = time.time()
        records = [
            Presignature(
                f"{sid}:{k}",
                entry.domain_id,
                entry.epoch,
                {p: (commitments[p][k].hiding, commitments[p][k].binding) for p in participants},
                _nonce_bytes(own[k][0]),
                created,
            )
            for k in range(count)
        ]
        del own
        await self._store(records, participants, generation)
        return [record.info for record in records]

    async def _store(
        self, records: list[Presignature], participants: Iterable[int], generation: int
    ) -> None:
        """Store a batch, unless one of its participants was purged meanwhile — also while
        it was being written: then the records written are deleted again."""
        ids = set(participants)
        await asyncio.to_thread(self.keystore.add_presignatures, records)
        purged = self._purged_since(generation)
        if purged & ids or -1 in purged:
            ids_written = [record.id for record in records]
            await asyncio.to_thread(self.keystore.take_presignatures, ids_written)  # deleted
            raise _BatchFailed("a participant was purged while the batch was stored")

    async def _collect(
        self, session: Session, members: Sequence[int], expect: type[_M], stage: str
    ) -> dict[int, _M]:
        received: dict[int, _M] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        while len(received) < len(members):
            missing = set(members) - set(received)
            try:
                sender, message = await session.recv(
                    missing, deadline - loop.time(), expect=(expect, Refusal)
                )
            except TimeoutError:
                raise _BatchFailed(f"no {stage} from {sorted(missing)}", missing) from None
            if isinstance(message, Refusal):
                raise _BatchFailed(
                    f"participant {sender} refused: {message.code} ({message.reason})", [sender]
                )
            assert isinstance(message, expect)
            received[sender] = message
        return received

    # -- member side

    def _serve(self, sender: int, message: Message) -> None:
        """Checks run at once (in the mesh's order); the work runs in a task, so a batch never
        holds up the signing requests that follow it on the same connection."""
        if isinstance(message, PresignRequest):
            refusal = self._check_request(sender, message)
            if refusal is not None:
                self._background(self._reply(sender, Refusal(message.session, *refusal)))
                return
            # reserve the slot now, so the per-owner bound holds while commitments are made
            pending = _PendingBatch(
                self._clock() + 2 * self.request_timeout,
                message.domain_id,
                message.epoch,
                message.participants,
                [],
                message.count,
                self._purge_generation,
            )
            self._pending[(sender, message.session)] = pending
            self._background(self._on_request(sender, message, pending))
        elif isinstance(message, PresignConfirm):
            confirmed = self._pending.pop((sender, message.session), None)
            if confirmed is None or not confirmed.nonces:
                unknown = Refusal(message.session, "unknown_batch", "no open batch with this id")
                self._background(self._reply(sender, unknown))
                return
            self._background(self._on_confirm(sender, message, confirmed))
        # anything else is a late reply to a batch we no longer run

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._member_tasks.add(task)
        task.add_done_callback(self._member_tasks.discard)

    async def _reply(self, to: int, message: Message) -> None:
        if isinstance(message, Refusal):
            self.stats.member_refusals += 1
            log.info(
                "refused presignature batch %s of participant %s: %s (%s)",
                message.session,
                to,
                message.code,
                message.reason,
            )
        try:
            await self.router.mesh.send(to, CHANNEL_PRESIGN, encode(message))
        except Exception as exc:
            log.info("could not answer participant %s: %s", to, type(exc).__name__)

    def _expire_pending(self) -> None:
        now = self._clock()
        for pending_key, pending in list(self._pending.items()):
            if pending.expires <= now:
                del self._pending[pending_key]

    def _check_request(self, sender: int, message: PresignRequest) -> tuple[str, str] | None:
        sid = message.session
        _, sep, batch = sid.partition(":")
        if presignature_owner(sid) != sender or not sep or len(sid) > 120 or ":" in batch:
            return "invalid_request", "the batch id must be <sender>:<batch>"
        entry = self._keys.get((message.domain_id, message.epoch))
        if entry is None:
            return "unknown_key", f"no key for domain {message.domain_id} epoch {message.epoch}"
        holders = set(entry.public.verifying_shares)
        if sender not in holders:
            return "not_participant", f"participant {sender} holds no share of this key"
        participants = set(message.participants)
        if (
            not participants <= holders
            or sender not in participants
            or self.me not in participants
            or len(participants) != entry.public.threshold
        ):
            return "invalid_request", "the signer set is not t holders including us and the owner"
        self._expire_pending()
        if (sender, sid) in self._pending:
            return "invalid_request", "batch id already in use"
        open_batches = [p for (o, _), p in self._pending.items() if o == sender]
        if len(open_batches) >= self.max_pending_per_owner:
            return "busy", "too many open batches"
        held = self.keystore.presignature_count(
            message.domain_id, message.epoch, id_prefix=f"{sender}:"
        )
        reserved = sum(p.count for p in open_batches)
        if held + reserved + message.count > self.max_held_per_owner:
            return "too_many_presignatures", (
                f"{held} presignatures of participant {sender} held, at most "
                f"{self.max_held_per_owner}"
            )
        return None

    async def _on_request(
        self, sender: int, message: PresignRequest, pending: _PendingBatch
    ) -> None:
        sid = message.session
        entry = self._keys[(message.domain_id, message.epoch)]
        share = entry.key.signing_share
        count = message.count
        pairs = await asyncio.to_thread(
            lambda: [frost.commit(share, self.random_bytes) for _ in range(count)]
        )
        if self._pending.get((sender, sid)) is not pending:  # purged or retired meanwhile
            await self._reply(sender, Refusal(sid, "unknown_batch", "the batch was dropped"))
            return
        pending.nonces.extend(nonces for nonces, _ in pairs)
        await self._reply(sender, PresignCommitments(sid, tuple(c for _, c in pairs)))

    async def _on_confirm(
        self, sender: int, message: PresignConfirm, pending: _PendingBatch
    ) -> None:
        sid = message.session
        count = len(pending.nonces)
        commitments = message.commitments
        own = tuple(n.commitments for n in pending.nonces)
        me = self.me
        if (
            me is None
            or set(commitments) != set(pending.participants)
            or any(len(run) != count for run in commitments.values())
            or tuple(commitments[me]) != own
        ):
            await self._reply(
                sender, Refusal(sid, "commitments_mismatch", "the batch's commitments differ")
            )
            return
        created = time.time()
        records = [
            Presignature(
                f"{sid}:{k}",
                pending.domain_id,
                pending.epoch,
                {p: (commitments[p][k].hiding, commitments[p][k].binding) for p in commitments},
                _nonce_bytes(pending.nonces[k]),
                created,
            )
            for k in range(count)
        ]
        pending.nonces.clear()
        try:
            await self._store(records, pending.participants, pending.generation)
        except KeystoreError as exc:
            await self._reply(sender, Refusal(sid, "store_failed", exc.code))
            return
        except _BatchFailed:
            await self._reply(sender, Refusal(sid, "unknown_batch", "the batch was dropped"))
            return
        self.stats.member_batches_stored += 1
        await self._reply(sender, PresignStored(sid))


def _invalid_commitments(replies: dict[int, PresignCommitments]) -> int | None:
    """The first member whose commitments are not valid group elements (or None)."""
    for member in sorted(replies):
        for c in replies[member].commitments:
            try:
                element_decode(c.hiding)
                element_decode(c.binding)
            except InvalidEncoding:
                return member
    return None
