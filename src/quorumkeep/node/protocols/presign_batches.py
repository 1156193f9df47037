"""What both sides of a presignature batch share (protocols/presign.py).

Presignature ids (``<owner>:<batch>:<k>``), the records an owner keeps per key and a member
per open batch, the failure a batch ends with, and storing a batch: the one write of its
presignatures, undone when one of its participants was purged while it ran (``PurgeLog``).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from quorumkeep.crypto import frost
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.encoding.fields import parse_decimal
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import Presignature, PresignatureInfo

KeyId = tuple[int, int]
"""(domain_id, epoch)."""


def presignature_owner(presignature_id: str) -> int | None:
    """The owner named by an id ``<owner>:<batch>:<k>``, or None for another shape."""
    head, sep, _ = presignature_id.partition(":")
    try:
        return parse_decimal(head, 20) if sep else None
    except ValueError:
        return None


def nonce_bytes(nonces: frost.SigningNonces) -> bytes:
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
class PoolKey:
    domain_id: int
    epoch: int
    key: KeyPackage
    public: PublicKeyPackage
    target: int
    owned: OrderedDict[str, PresignatureInfo] = field(default_factory=OrderedDict)
    in_flight: int = 0
    flying: Counter[int] = field(default_factory=Counter)
    """Presignatures in flight per member peer (for :meth:`BatchOwner._next_batch`)."""
    batches: int = 0
    rotation: int = 0
    retry_at: float = 0.0


@dataclass(eq=False)
class PendingBatch:
    expires: float
    domain_id: int
    epoch: int
    participants: tuple[int, ...]
    nonces: list[frost.SigningNonces] = field(repr=False)
    count: int = 0
    generation: int = 0
    """The pool's purge generation when the batch was accepted."""


class BatchFailed(Exception):
    def __init__(self, reason: str, members: Iterable[int] = ()) -> None:
        super().__init__(reason)
        self.members = frozenset(members)


class PurgeLog:
    """The pool's purges, numbered by generation (the last 64 kept)."""

    def __init__(self) -> None:
        self.generation = 0
        self._purges: list[tuple[int, frozenset[int]]] = []

    def record(self, ids: frozenset[int]) -> None:
        self.generation += 1
        self._purges.append((self.generation, ids))
        del self._purges[:-64]

    def since(self, generation: int) -> frozenset[int]:
        out: set[int] = set()
        for g, ids in self._purges:
            if g > generation:
                out |= ids
        if self._purges and self._purges[0][0] > generation + 1:
            return frozenset({-1})  # history truncated: treat everything as purged
        return frozenset(out)


async def store_batch(
    keystore: Keystore,
    purges: PurgeLog,
    records: list[Presignature],
    participants: Iterable[int],
    generation: int,
) -> None:
    """Store a batch, unless one of its participants was purged meanwhile — also while
    it was being written: then the records written are deleted again."""
    ids = set(participants)
    await asyncio.to_thread(keystore.add_presignatures, records)
    purged = purges.since(generation)
    if purged & ids or -1 in purged:
        ids_written = [record.id for record in records]
        await asyncio.to_thread(keystore.take_presignatures, ids_written)  # deleted
        raise BatchFailed("a participant was purged while the batch was stored")
