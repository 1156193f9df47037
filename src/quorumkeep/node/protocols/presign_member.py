"""The member's side of presigning: other owners' batches (protocols/presign.py).

``PresignMember`` serves the ``presign`` channel: it checks each ``presign_request`` at once,
in the mesh's order, reserving the batch against the per-owner bounds before it commits to
anything; makes the nonces in a task and keeps them in memory until the owner's
``presign_confirm``, then stores them sealed with the batch's full commitment list (one
transaction) before answering ``presign_stored``. An open batch it holds no nonces for, one
dropped by a purge or one whose confirm differs from what it sent, is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from quorumkeep.crypto import frost
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.keystore_records import Presignature
from quorumkeep.node.messages import (
    CHANNEL_PRESIGN,
    Message,
    PresignCommitments,
    PresignConfirm,
    PresignRequest,
    PresignStored,
    Refusal,
)
from quorumkeep.node.protocols.presign_batches import (
    BatchFailed,
    KeyId,
    PendingBatch,
    PoolKey,
    PoolStats,
    PurgeLog,
    nonce_bytes,
    presignature_owner,
    store_batch,
)
from quorumkeep.node.session_router import SessionRouter

log = logging.getLogger("quorumkeep.node.protocols.presign")


class PresignMember:
    """Answers other owners' batches for the keys the pool serves (module doc)."""

    def __init__(
        self,
        router: SessionRouter,
        keystore: Keystore,
        keys: Mapping[KeyId, PoolKey],
        purges: PurgeLog,
        stats: PoolStats,
        me: int | None,
        random_bytes: RandomBytes,
        *,
        request_timeout: float,
        max_pending_per_owner: int,
        max_held_per_owner: int,
        clock: Callable[[], float],
    ) -> None:
        self.router = router
        self.keystore = keystore
        self.me = me
        self.random_bytes = random_bytes
        self.request_timeout = request_timeout
        self.max_pending_per_owner = max_pending_per_owner
        self.max_held_per_owner = max_held_per_owner
        self.stats = stats
        self._clock = clock
        self._keys = keys
        self._purges = purges
        self.pending: dict[tuple[int, str], PendingBatch] = {}
        """Open batches by (owner, session id)."""
        self.tasks: set[asyncio.Task[None]] = set()

    def reset(self, me: int | None) -> None:
        """Serve as ``me`` from now on; open batches are dropped."""
        self.me = me
        self.pending.clear()

    def serve(self, sender: int, message: Message) -> None:
        """Checks run at once (in the mesh's order); the work runs in a task, so a batch never
        holds up the signing requests that follow it on the same connection."""
        if isinstance(message, PresignRequest):
            refusal = self._check_request(sender, message)
            if refusal is not None:
                self._background(self._reply(sender, Refusal(message.session, *refusal)))
                return
            # reserve the slot now, so the per-owner bound holds while commitments are made
            pending = PendingBatch(
                self._clock() + 2 * self.request_timeout,
                message.domain_id,
                message.epoch,
                message.participants,
                [],
                message.count,
                self._purges.generation,
            )
            self.pending[(sender, message.session)] = pending
            self._background(self._on_request(sender, message, pending))
        elif isinstance(message, PresignConfirm):
            confirmed = self.pending.pop((sender, message.session), None)
            if confirmed is None or not confirmed.nonces:
                unknown = Refusal(message.session, "unknown_batch", "no open batch with this id")
                self._background(self._reply(sender, unknown))
                return
            self._background(self._on_confirm(sender, message, confirmed))
        # anything else is a late reply to a batch we no longer run

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, to: int, message: Message) -> None:
        if isinstance(message, Refusal):
            self.stats.member_refusals += 1
        await self.router.answer(to, CHANNEL_PRESIGN, message, "presignature batch")

    def _expire_pending(self) -> None:
        now = self._clock()
        for pending_key, pending in list(self.pending.items()):
            if pending.expires <= now:
                del self.pending[pending_key]

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
        if (sender, sid) in self.pending:
            return "invalid_request", "batch id already in use"
        open_batches = [p for (o, _), p in self.pending.items() if o == sender]
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
        self, sender: int, message: PresignRequest, pending: PendingBatch
    ) -> None:
        sid = message.session
        entry = self._keys[(message.domain_id, message.epoch)]
        share = entry.key.signing_share
        count = message.count
        pairs = await asyncio.to_thread(
            lambda: [frost.commit(share, self.random_bytes) for _ in range(count)]
        )
        if self.pending.get((sender, sid)) is not pending:  # purged or retired meanwhile
            await self._reply(sender, Refusal(sid, "unknown_batch", "the batch was dropped"))
            return
        pending.nonces.extend(nonces for nonces, _ in pairs)
        await self._reply(sender, PresignCommitments(sid, tuple(c for _, c in pairs)))

    async def _on_confirm(
        self, sender: int, message: PresignConfirm, pending: PendingBatch
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
                nonce_bytes(pending.nonces[k]),
                created,
            )
            for k in range(count)
        ]
        pending.nonces.clear()
        try:
            await store_batch(
                self.keystore, self._purges, records, pending.participants, pending.generation
            )
        except KeystoreError as exc:
            await self._reply(sender, Refusal(sid, "store_failed", exc.code))
            return
        except BatchFailed:
            await self._reply(sender, Refusal(sid, "unknown_batch", "the batch was dropped"))
            return
        self.stats.member_batches_stored += 1
        await self._reply(sender, PresignStored(sid))
