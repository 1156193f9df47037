"""Taking presignature nonces out of the keystore, many at a time.

Every signature share needs one ``take_presignature``: a write transaction whose commit is
fsynced before the nonce may be used. Under load those commits are what a node waits for, one
after the other (SQLite has one writer). :class:`PresignatureTaker` gathers the takes that
arrive while one is running and performs them together in one worker thread — in a single
transaction (one fsync, ``Keystore.take_presignatures``). Each caller gets its presignature
only after its deletion committed.
"""

from __future__ import annotations

import asyncio

from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.keystore_records import Presignature


class PresignatureTaker:
    """Coalesces concurrent ``take_presignature`` calls on one keystore (module doc)."""

    def __init__(self, keystore: Keystore, *, max_batch: int = 64) -> None:
        self.keystore = keystore
        self.max_batch = max_batch
        self._queue: list[tuple[str, asyncio.Future[Presignature]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.taken = 0

    async def take(self, presignature_id: str) -> Presignature:
        """The presignature, removed durably; raises the keystore's error for this id."""
        future: asyncio.Future[Presignature] = asyncio.get_running_loop().create_future()
        self._queue.append((presignature_id, future))
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                ids = [presignature_id for presignature_id, _ in batch]
                try:
                    results = await asyncio.to_thread(self.keystore.take_presignatures, ids)
                except BaseException as exc:  # the thread itself failed: tell everyone
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(
                                exc if isinstance(exc, Exception) else KeystoreError("cancelled")
                            )
                    if not isinstance(exc, Exception):
                        raise
                    continue
                self.batches += 1
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue  # its caller went away; the record is deleted all the same
                    if isinstance(result, Presignature):
                        self.taken += 1
                        future.set_result(result)
                    else:
                        future.set_exception(result)
        finally:
            self._worker = None
            if self._queue:  # cancelled with work left: do not strand the waiters
                for _, future in self._queue:
                    if not future.done():
                        future.set_exception(KeystoreError("presignature taker stopped"))
                self._queue.clear()
