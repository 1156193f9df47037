"""The owner's side of presigning: when to run a batch, with which members, and running it.

``BatchOwner`` keeps each served key (``_keys``, filled by the pool in presign.py) towards its
target: a background loop starts batches while a key wants one (``_wants_batch``), picks their
members (``_next_batch``: the signer set rules of the module doc of presign.py) and leads each
batch — request, the members' commitments validated, confirm — storing its own nonces only
after every member reported its nonces stored (``_batch``). A member that refused or stayed
silent is skipped for a back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from quorumkeep.crypto import frost
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import RandomBytes, element_decode
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import Presignature, PresignatureInfo
from quorumkeep.node.messages import (
    CHANNEL_PRESIGN,
    Message,
    PresignCommitments,
    PresignConfirm,
    PresignRequest,
    PresignStored,
    Refusal,
)
from quorumkeep.node.messages_signing import MAX_BATCH
from quorumkeep.node.protocols.errors import InvalidSessionParameters
from quorumkeep.node.protocols.presign_batches import (
    BatchFailed,
    KeyId,
    PoolKey,
    PoolStats,
    PurgeLog,
    nonce_bytes,
    store_batch,
)
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.sessions import Session

log = logging.getLogger("quorumkeep.node.protocols.presign")

_M = TypeVar("_M", bound=Message)


def exposed(peers: Sequence[int], need: int, held: int, load: Mapping[int, int]) -> list[int]:
    """The ``peers`` every one of an owner's ``held`` presignatures includes (``load``: how
    many include each), so that losing one would leave the owner none — among peers a batch
    of ``need`` could leave out (more candidates than it takes); empty otherwise."""
    if len(peers) <= need:
        return []
    return [p for p in peers if load.get(p, 0) >= held]


class BatchOwner:
    """Background generation of a node's own presignatures, batch by batch (module doc)."""

    def __init__(
        self,
        router: SessionRouter,
        keystore: Keystore,
        me: int | None,
        random_bytes: RandomBytes = os.urandom,
        *,
        batch_size: int = 32,
        max_batches_in_flight: int = 2,
        request_timeout: float = 5.0,
        retry_delay: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise InvalidSessionParameters(f"batch_size must be in [1, {MAX_BATCH}]")
        self.router = router
        self.keystore = keystore
        self.me = me
        self.random_bytes = random_bytes
        self.batch_size = batch_size
        self.max_batches_in_flight = max_batches_in_flight
        self.request_timeout = request_timeout
        self.retry_delay = retry_delay
        self._clock = clock
        self._keys: dict[KeyId, PoolKey] = {}
        self._member_backoff: dict[int, float] = {}
        self._purges = PurgeLog()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self.stats = PoolStats()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._generate(), name=f"presign-{self.me}")

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

    def _next_batch(self, entry: PoolKey) -> tuple[list[int], int] | None:
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

    def _candidates(self, entry: PoolKey) -> list[int]:
        """The peers a batch may take now: connected holders of the key, not in back-off."""
        now = self._clock()
        connected = self.router.connected_peers()
        return [
            p
            for p in entry.public.identifiers
            if p != self.me and p in connected and self._member_backoff.get(p, 0.0) <= now
        ]

    def _load(self, entry: PoolKey) -> Counter[int]:
        """Per peer, the owner's presignatures (stored and in flight) that include it."""
        load = Counter(entry.flying)
        for info in entry.owned.values():
            load.update(p for p in info.participants if p != self.me)
        return load

    def _wants_batch(self, entry: PoolKey) -> bool:
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

    def _spawn(self, entry: PoolKey, members: list[int], count: int) -> None:
        self._reserve(entry, members, count)
        task = asyncio.create_task(self._run_batch(entry, members, count))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    @staticmethod
    def _reserve(entry: PoolKey, members: list[int], count: int) -> None:
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

    async def _run_batch(self, entry: PoolKey, members: list[int], count: int) -> None:
        self.stats.batches_started += 1
        try:
            infos = await self._batch(entry, members, count)
        except BatchFailed as exc:
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

    async def _batch(
        self, entry: PoolKey, members: list[int], count: int
    ) -> list[PresignatureInfo]:
        generation = self._purges.generation
        me = entry.key.identifier  # set_key checked it is self.me
        batch = self.random_bytes(8).hex()
        sid = f"{me}:{batch}"
        participants = tuple(sorted([*members, me]))
        with self.router.open(CHANNEL_PRESIGN, sid, members) as session:
            request = PresignRequest(sid, entry.domain_id, entry.epoch, participants, count)
            reached = await session.broadcast(members, request)
            if reached != set(members):
                raise BatchFailed("not connected", set(members) - reached)
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
                    raise BatchFailed(f"participant {member} sent a wrong number", [member])
                commitments[member] = reply.commitments
            bad = await asyncio.to_thread(_invalid_commitments, replies)
            if bad is not None:
                log.warning("participant %s sent invalid nonce commitments", bad)
                raise BatchFailed(f"participant {bad} sent invalid commitments", [bad])
            reached = await session.broadcast(members, PresignConfirm(sid, commitments))
            if reached != set(members):
                raise BatchFailed("not connected", set(members) - reached)
            await self._collect(session, members, PresignStored, "stored")
        purged = self._purges.since(generation)
        if purged & set(participants) or -1 in purged:
            raise BatchFailed("a participant was purged while the batch ran")
        created = time.time()
        records = [
            Presignature(
                f"{sid}:{k}",
                entry.domain_id,
                entry.epoch,
                {p: (commitments[p][k].hiding, commitments[p][k].binding) for p in participants},
                nonce_bytes(own[k][0]),
                created,
            )
            for k in range(count)
        ]
        del own
        await store_batch(self.keystore, self._purges, records, participants, generation)
        return [record.info for record in records]

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
                raise BatchFailed(f"no {stage} from {sorted(missing)}", missing) from None
            if isinstance(message, Refusal):
                raise BatchFailed(
                    f"participant {sender} refused: {message.code} ({message.reason})", [sender]
                )
            assert isinstance(message, expect)
            received[sender] = message
        return received


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
