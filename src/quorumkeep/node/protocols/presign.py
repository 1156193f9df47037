"""Owner-led presignatures: FROST round one done ahead of time, in batches.

Every node *owns* the presignatures it will later lead signatures with. For a key
(domain_id, epoch) with threshold t, the owner picks a signer set of itself and t-1
connected peers (leaving out the peers its pool already depends on most, so that the loss of
any one peer leaves usable presignatures; ``BatchOwner._next_batch``) and runs a batch
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

Here: ``PresignaturePool``, the keys served, purges and claims for signing. The owner's
generation and its side of a batch are in presign_owner.py, the member's side in
presign_member.py, what both share (ids, records, storing a batch) in presign_batches.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import PresignatureInfo
from quorumkeep.node.messages import CHANNEL_PRESIGN
from quorumkeep.node.protocols.errors import InvalidSessionParameters
from quorumkeep.node.protocols.presign_batches import KeyId, PoolKey
from quorumkeep.node.protocols.presign_member import PresignMember
from quorumkeep.node.protocols.presign_owner import BatchOwner
from quorumkeep.node.session_router import SessionRouter

log = logging.getLogger("quorumkeep.node.protocols.presign")

Usable = Callable[[tuple[int, ...]], bool]
"""Whether a presignature with these participants can be used now (sign.py's choice)."""


class PresignaturePool(BatchOwner):
    """A node's presignatures: the keys it serves, claims for signing, purges. Generation
    is :class:`BatchOwner`'s; other owners' batches are answered by ``member``.

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
        super().__init__(
            router,
            keystore,
            me,
            random_bytes,
            batch_size=batch_size,
            max_batches_in_flight=max_batches_in_flight,
            request_timeout=request_timeout,
            retry_delay=retry_delay,
            clock=clock,
        )
        self.default_target = target
        self._epoch: int | None = None
        self._cleanup_tasks: set[asyncio.Task[None]] = set()
        self.member = PresignMember(
            router,
            keystore,
            self._keys,
            self._purges,
            self.stats,
            me,
            random_bytes,
            request_timeout=request_timeout,
            max_pending_per_owner=max_pending_per_owner,
            # An honest owner holds at most its target plus the batches it has in flight;
            # twice the target leaves room for a peer configured with a larger one.
            max_held_per_owner=(
                2 * target + max_batches_in_flight * batch_size
                if max_held_per_owner is None
                else max_held_per_owner
            ),
            clock=clock,
        )
        router.serve(CHANNEL_PRESIGN, self.member.serve)

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
            self.member.reset(me)
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
        entry = PoolKey(domain_id, epoch, key, public, target)
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
        for pending_key, pending in list(self.member.pending.items()):
            if (pending.domain_id, pending.epoch) == (domain_id, epoch):
                del self.member.pending[pending_key]
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
        for pending_key, pending in list(self.member.pending.items()):
            if ids & set(pending.participants):
                del self.member.pending[pending_key]
        self._purges.record(ids)
        self._wake.set()
        log.info("purged %s presignatures involving %s", removed, sorted(ids))
        return removed

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

    # -- lifecycle (generation: BatchOwner.start)

    async def close(self) -> None:
        """Stop generating and serving (bounded); the keystore stays open (the caller's)."""
        self.router.unserve(CHANNEL_PRESIGN, self.member.serve)
        await self.stop()

    async def stop(self) -> None:
        tasks = [
            t
            for t in (self._task, *self._batch_tasks, *self._cleanup_tasks, *self.member.tasks)
            if t
        ]
        self._task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.member.pending.clear()
