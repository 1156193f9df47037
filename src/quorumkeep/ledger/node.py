"""The block producer: turns submissions into durable blocks, one SQLite commit per block.

Submissions queue up while the previous block is being fsynced, and the next block takes
them all (group commit), so throughput grows with concurrency while each submitter still
waits for exactly one commit. When nothing arrives, a block is made only when something
falls due: the contract's next sign timeout (``Contract.next_timeout_ms``, by block time),
or a heartbeat after ``idle_block_ms`` (default 10 minutes) so that the head a client names
in a new transaction is never older than the ledger's time limit on transactions allows.

Everything that reads state (views, accounts) waits until the state equals the last
*committed* block: a reader never sees a change that a crash could still undo.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from quorumkeep.ledger import snapshot
from quorumkeep.ledger.blocks import Block, block_events
from quorumkeep.ledger.chain import LedgerState
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.event_filter import EventFilter
from quorumkeep.ledger.storage import BlockReader, BlockStore, StorageError
from quorumkeep.ledger.transaction import SignedTransaction

log = logging.getLogger(__name__)

DEFAULT_IDLE_BLOCK_MS = 600_000
MAX_BLOCK_TRANSACTIONS = 2000
MAX_PENDING = 20_000
EVENTS_IN_MEMORY = 20_000
MAX_EVENTS_PER_PAGE = 1000


@dataclass(frozen=True)
class Receipt:
    """What a submitter is told once its transaction's block is durable."""

    tx_hash: str
    block_height: int
    outcome: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tx_hash": self.tx_hash,
            "block_height": self.block_height,
            "status": self.outcome["status"],
            "value": self.outcome.get("value"),
            "events": self.outcome.get("events", []),
        }
        if "error" in self.outcome:
            body["error"] = self.outcome["error"]
        return body


class EventLog:
    """Recent events in memory; the heights of every event-bearing block for older reads,
    in all and per event kind (so a filtered read never looks at a non-matching block)."""

    def __init__(self) -> None:
        self._recent: list[dict[str, Any]] = []
        self._recent_heights: list[int] = []  # parallel to _recent, for bisect
        self.heights: list[int] = []  # sorted heights of every block that has events
        self.kind_heights: dict[str, list[int]] = {}  # kind -> sorted heights of its blocks
        self.last_height = -1  # height of the newest event-bearing block
        self.floor = -1  # every event at a height above this is in memory

    def add_block(self, block: Block) -> None:
        events = block_events(block)
        if not events:
            return
        self.heights.append(block.height)
        self.last_height = block.height
        for kind in {e["kind"] for e in events}:
            self.kind_heights.setdefault(kind, []).append(block.height)
        self._recent.extend(events)
        self._recent_heights.extend(e["height"] for e in events)
        if len(self._recent) > 2 * EVENTS_IN_MEMORY:
            # Drop whole blocks from the front, in one slice (amortized O(1) per event).
            cut = bisect.bisect_right(
                self._recent_heights, self._recent_heights[len(self._recent) - EVENTS_IN_MEMORY]
            )
            cut = min(cut, len(self._recent) - len(events))
            self.floor = self._recent_heights[cut - 1]
            del self._recent[:cut]
            del self._recent_heights[:cut]

    def load_index(self, rows: list[tuple[str, int]], floor: int) -> None:
        """Start from the stored per-kind index of the blocks up to ``floor`` (whose events
        are then read from disk); blocks after it are added with ``add_block``."""
        for kind, height in rows:
            if height > floor:
                continue
            if not self.heights or self.heights[-1] != height:
                self.heights.append(height)
            self.kind_heights.setdefault(kind, []).append(height)
        self.last_height = self.heights[-1] if self.heights else -1
        self.floor = floor

    def index_rows(self) -> list[tuple[str, int]]:
        """(kind, height) for every indexed block, as the store keeps them."""
        return [(kind, h) for kind, heights in self.kind_heights.items() for h in heights]

    def covers(self, since: int) -> bool:
        return since >= self.floor

    def last_matching(self, event_filter: EventFilter | None) -> int:
        """Height of the newest block with an event ``event_filter`` lets through."""
        if event_filter is None:
            return self.last_height
        return max(
            (h[-1] for kind, h in self.kind_heights.items() if event_filter.matches(kind)),
            default=-1,
        )

    def matching_heights(
        self, since: int, event_filter: EventFilter | None, count: int
    ) -> list[int]:
        """Heights of the first ``count`` blocks above ``since`` with a matching event."""
        if event_filter is None:
            start = bisect.bisect_right(self.heights, since)
            return self.heights[start : start + count]
        slices = []
        for kind, heights in self.kind_heights.items():
            if event_filter.matches(kind):
                start = bisect.bisect_right(heights, since)
                if start < len(heights):
                    slices.append(heights[start : start + count])
        if len(slices) <= 1:
            return slices[0] if slices else []
        merged: list[int] = []
        for height in heapq.merge(*slices):
            if not merged or merged[-1] != height:
                if len(merged) == count:
                    break
                merged.append(height)
        return merged

    def filtered_page_from_memory(
        self, since: int, event_filter: EventFilter, limit: int
    ) -> list[dict[str, Any]]:
        """``page_from_memory`` of the matching events only, visiting only matching blocks."""
        result: list[dict[str, Any]] = []
        for height in self.matching_heights(since, event_filter, limit):
            lo = bisect.bisect_left(self._recent_heights, height)
            hi = bisect.bisect_right(self._recent_heights, height, lo)
            block = [e for e in self._recent[lo:hi] if event_filter.matches(e["kind"])]
            if result and len(result) + len(block) > limit:
                break
            result.extend(block)
        return result

    def page_from_memory(self, since: int, limit: int) -> list[dict[str, Any]]:
        """Events at height > since, whole blocks only, stopping once ``limit`` is reached."""
        start = bisect.bisect_right(self._recent_heights, since)
        result: list[dict[str, Any]] = []
        for event in self._recent[start : start + limit + 1]:
            if len(result) >= limit and event["height"] != result[-1]["height"]:
                break
            result.append(event)
        if len(result) > limit:
            # One block holds more than ``limit`` events: serve that block whole.
            height = result[0]["height"]
            end = bisect.bisect_right(self._recent_heights, height)
            result = self._recent[start:end]
        return result


class BlockBackend(Protocol):
    """Where blocks go and come from; every method is called on an executor thread.
    ``append`` raises when the block is not durably stored (the node then stops)."""

    def append(self, block: Block) -> None: ...
    def write_snapshot(self, height: int, block_hash: bytes, body: bytes) -> None: ...
    def block_body(self, height: int) -> bytes | None: ...
    def block_bodies(self, heights: list[int]) -> list[tuple[int, bytes]]: ...
    def transaction_height(self, tx_hash: bytes) -> int | None: ...
    def close(self) -> None: ...


class SqliteBackend:
    """The embedded default: one SQLite file (the writer and a read-only connection)."""

    def __init__(self, store: BlockStore, reader: BlockReader) -> None:
        self.store = store
        self.reader = reader
        self.append = store.append
        self.write_snapshot = store.write_snapshot
        self.block_body = reader.block_body
        self.block_bodies = reader.block_bodies
        self.transaction_height = reader.transaction_height

    def close(self) -> None:
        self.reader.close()
        self.store.close()


@dataclass
class _Submission:
    signed: SignedTransaction
    future: asyncio.Future[Receipt]


class LedgerNode:
    """Owns the state, the store and the producer task of one running ledger."""

    def __init__(
        self,
        data_dir: Path,
        *,
        idle_block_ms: int = DEFAULT_IDLE_BLOCK_MS,
        clock_ms: Callable[[], int] | None = None,
        snapshot_every_blocks: int = snapshot.DEFAULT_SNAPSHOT_EVERY_BLOCKS,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.events = EventLog()
        # Opening verifies the chain and replays it; LedgerCorrupted propagates to the caller.
        self.backend, self.state, snapshot_height = self._open()
        # The heartbeat must leave a transaction naming the head at least half the time limit.
        limit = self.state.tx_validity_ms
        self.idle_block_ms = idle_block_ms if limit is None else min(idle_block_ms, limit // 2)
        self._snapshots = snapshot.SnapshotPolicy(snapshot_height, snapshot_every_blocks)
        self.committed_height = self.state.height
        self.committed_hash = self.state.head_hash
        self.committed_timestamp_ms = self.state.timestamp_ms
        self.failed: str | None = None
        self._pending: list[_Submission] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ledger-reader")
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._stable: asyncio.Event | None = None
        self._new_block: asyncio.Condition | None = None
        self._stopping = False
        self._closing = False  # shutting down: long-polls return at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_fatal: Callable[[str], None] | None = None

    def _open(self) -> tuple[BlockBackend, LedgerState, int]:
        """The storage, and the state rebuilt from it (and the snapshot height used)."""
        store = BlockStore(self.data_dir)
        try:
            if store.head_height() is None:
                raise StorageError(f"{self.data_dir} holds no genesis block (run `ledger init`)")
            state, snapshot_height = self._restore(store)
            return SqliteBackend(store, BlockReader(self.data_dir)), state, snapshot_height
        except BaseException:
            store.close()
            raise

    def _restore(self, store: BlockStore) -> tuple[LedgerState, int]:
        """The state from the newest verifying snapshot and the tail (or the whole chain),
        with the event index loaded or, for a ledger written without one, rebuilt."""
        indexed = store.has_event_index()

        def before_tail(snapshot_height: int) -> None:
            if snapshot_height >= 0:
                if not indexed:
                    raise StorageError(f"{self.data_dir} has a snapshot but no event index")
                self.events.load_index(store.event_index(), snapshot_height)

        restored = snapshot.restore(store, self.events.add_block, before_tail)
        if not indexed:
            store.rebuild_event_index(self.events.index_rows())
        return restored.state, restored.snapshot_height

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran (the block producer exists)."""
        return self._task is not None

    # --- lifecycle -------------------------------------------------------------------

    def close_unstarted(self) -> None:
        """Release the store of a node whose producer never ran (e.g. the port was taken)."""
        self._writer.shutdown(wait=False)
        self._readers.shutdown(wait=False)
        self.backend.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stable = asyncio.Event()
        self._stable.set()
        self._new_block = asyncio.Condition()
        self._start_producing()

    def _start_producing(self) -> None:
        self._task = asyncio.create_task(self._produce(), name="ledger-block-producer")

    def begin_shutdown(self) -> None:
        """Answer every waiting long-poll now (thread- and signal-safe), so the server's
        graceful shutdown does not wait for them to time out."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            self._closing = True
            if self._new_block is not None:
                loop.create_task(self._notify_block())

        loop.call_soon_threadsafe(wake)

    async def stop(self) -> None:
        self._stopping = True
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if self.failed is None and self.state.height > self._snapshots.last_height:
                await self._snapshot()  # a clean shutdown: the next start replays nothing
        if self._new_block is not None:
            await self._notify_block()  # long-polls return now rather than at their timeout
        self._fail_pending(LedgerError("ShuttingDown", "the ledger is shutting down"))
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.backend.close()

    # --- submission ------------------------------------------------------------------

    async def submit(self, signed: SignedTransaction) -> Receipt:
        """Check, queue and wait until ``signed`` is in a durable block (or refused)."""
        if self.failed is not None:
            raise LedgerError("LedgerUnavailable", self.failed)
        if self._stopping:
            raise LedgerError("ShuttingDown", "the ledger is shutting down")
        signed.verify()
        self.state.check(signed, timestamp_ms=self._clock_ms())
        if len(self._pending) >= MAX_PENDING:
            raise LedgerError("LedgerUnavailable", "too many pending transactions; retry")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        self._pending.append(_Submission(signed, future))
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    def _idle_wait_s(self, last_block: float) -> float:
        """Seconds until a block falls due with no transaction: the heartbeat or the
        contract's next timeout, whichever is first (<= 0: now)."""
        wait = self.idle_block_ms / 1000 - (time.monotonic() - last_block)
        timeout_ms = self.state.contract.next_timeout_ms()
        if timeout_ms is not None:
            wait = min(wait, (timeout_ms - self._clock_ms()) / 1000)
        return wait

    async def _produce(self) -> None:
        assert self._wakeup is not None and self._stable is not None
        last_block = time.monotonic()
        while self._producing():
            if not self._pending:
                remaining = self._idle_wait_s(last_block)
                if remaining > 0:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    if not self._producing():
                        break
                    if not self._pending and self._idle_wait_s(last_block) > 0:
                        continue
            batch = self._pending[:MAX_BLOCK_TRANSACTIONS]
            del self._pending[:MAX_BLOCK_TRANSACTIONS]
            self._stable.clear()
            height = self.state.height + 1
            try:
                block, applied = self.state.build_block([s.signed for s in batch], self._clock_ms())
            except Exception as exc:  # a contract bug in on_block or a non-JSON value
                log.exception("building block %d failed", height)
                self._fatal(f"block {height} could not be built: {type(exc).__name__}", batch)
                return
            if not await self._store_block(block, batch):
                return
            last_block = time.monotonic()
            self._committed(block)
            for submission, result in zip(batch, applied, strict=True):
                if submission.future.done():
                    continue
                if result.error is not None:
                    submission.future.set_exception(result.error)
                else:
                    assert result.outcome is not None
                    submission.future.set_result(
                        Receipt(result.signed.hash.hex(), block.height, result.outcome.to_json())
                    )
            await self._notify_block()
            if self._snapshots.due(block):
                await self._snapshot()

    def _producing(self) -> bool:
        """Whether the producer goes on (a replicated ledger stops when it is deposed)."""
        return not self._stopping

    async def _store_block(self, block: Block, batch: list[_Submission]) -> bool:
        """Make ``block`` durable; on failure stop the ledger (its memory is ahead of its
        disk) and return False."""
        loop = asyncio.get_running_loop()
        try:
            # In a thread: requests keep being parsed and checked (and queue up for the
            # next block) while this one is fsynced.
            await loop.run_in_executor(self._writer, self.backend.append, block)
        except Exception as exc:
            self._fatal(f"block {block.height} could not be stored: {exc}", batch)
            return False
        return True

    def _committed(self, block: Block) -> None:
        """``block`` is durable and the state is its state: readers may see it."""
        assert self._stable is not None
        self.committed_height = block.height
        self.committed_hash = block.hash
        self.committed_timestamp_ms = block.timestamp_ms
        self.events.add_block(block)
        self._stable.set()

    async def _snapshot(self) -> None:
        """Write a snapshot of the state, which equals the last committed block now. A
        failure is only logged: the blocks stay the truth, start-up just replays more."""
        loop = asyncio.get_running_loop()
        try:
            height, block_hash, body = snapshot.encode(self.state)
            await loop.run_in_executor(
                self._writer, self.backend.write_snapshot, height, block_hash, body
            )
        except Exception as exc:
            log.warning("the snapshot at block %d was not written: %s", self.state.height, exc)
            return
        self._snapshots.taken(height)

    async def _notify_block(self) -> None:
        assert self._new_block is not None
        async with self._new_block:
            self._new_block.notify_all()

    def _fatal(self, reason: str, batch: list[_Submission]) -> None:
        # The in-memory state is now ahead of the disk: nothing more may be answered from
        # it. Stop; a restart rebuilds the state from the blocks that were committed.
        log.critical("ledger stopping: %s", reason)
        self.failed = reason
        if self._stable is not None:
            self._stable.set()  # wake waiting readers; they see `failed` and refuse
        error = LedgerError("LedgerUnavailable", "the ledger failed to store a block; restart it")
        for submission in batch:
            if not submission.future.done():
                submission.future.set_exception(error)
        self._fail_pending(error)
        if self.on_fatal is not None:
            self.on_fatal(reason)

    def _fail_pending(self, error: LedgerError) -> None:
        pending, self._pending = self._pending, []
        for submission in pending:
            if not submission.future.done():
                submission.future.set_exception(error)

    # --- reads -----------------------------------------------------------------------

    async def committed(self) -> LedgerState:
        """The state, once it equals the last committed block (awaits an in-flight commit)."""
        assert self._stable is not None
        while not self._stable.is_set():
            await self._stable.wait()
        if self.failed is not None:  # woken by _fatal: the in-memory state is not durable
            raise LedgerError("LedgerUnavailable", self.failed)
        return self.state

    async def block_body(self, height: int) -> bytes | None:
        if height < 0 or height > self.committed_height:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.backend.block_body, height)

    async def transaction_height(self, tx_hash: bytes) -> int | None:
        await self.committed()  # a transaction seen as a duplicate may be in the block in flight
        loop = asyncio.get_running_loop()
        height = await loop.run_in_executor(self._readers, self.backend.transaction_height, tx_hash)
        if height is None or height > self.committed_height:
            return None
        return height

    async def events_since(
        self,
        since: int,
        timeout: float,
        limit: int = MAX_EVENTS_PER_PAGE,
        event_filter: EventFilter | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Events at height > since (whole blocks), waiting up to ``timeout`` for the first.

        With ``event_filter``, only the matching events count: for the wait, for ``limit``
        and in the answer. Returns the events and the cursor to pass as ``since`` next time,
        which is past every block that had nothing matching.
        """
        if since > self.committed_height:
            raise LedgerError(
                "InvalidCursor",
                f"since={since} is ahead of the ledger head {self.committed_height}",
            )
        assert self._new_block is not None
        log = self.events
        if log.last_matching(event_filter) <= since and timeout > 0 and not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout), self._new_block:
                    await self._new_block.wait_for(
                        lambda: log.last_matching(event_filter) > since or self._closing
                    )
        head = self.committed_height
        if log.last_matching(event_filter) <= since:
            return [], head
        if not log.covers(since):
            events = await self._events_from_disk(since, limit, event_filter)
        elif event_filter is None:
            events = log.page_from_memory(since, limit)
        else:
            events = log.filtered_page_from_memory(since, event_filter, limit)
        if not events:
            return [], head
        truncated = events[-1]["height"] < log.last_matching(event_filter)
        return events, (events[-1]["height"] if truncated else head)

    async def _events_from_disk(
        self, since: int, limit: int, event_filter: EventFilter | None = None
    ) -> list[dict[str, Any]]:
        wanted = self.events.matching_heights(since, event_filter, limit)
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._readers, self.backend.block_bodies, wanted)
        events: list[dict[str, Any]] = []
        for _height, body in rows:
            block_page = block_events(Block.from_body(body))
            if event_filter is not None:
                block_page = [e for e in block_page if event_filter.matches(e["kind"])]
            if events and len(events) + len(block_page) > limit:
                break
            events.extend(block_page)
        return events
