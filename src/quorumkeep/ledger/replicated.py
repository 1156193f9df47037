"""The ledger replicated on etcd: several servers, one chain, one proposer at a time.

Key layout under a prefix P (default ``quorumkeep/ledger/``; docs/ledger.md, "etcd"):

    P blocks/<height, 20 decimal digits>   the block body (canonical JSON), exactly as
                                           SQLite's ``blocks.body``; its hash is computed
    P proposer                             {"id": hex16, "url": str}, bound to the
                                           proposer's lease
    P events/<kind>/<height, 20 digits>    empty: block <height> has an event of <kind>
                                           (written with the block; the per-kind index)
    P snapshot                             the newest snapshot (snapshot.py's format)

Proposer rule: a server campaigns by creating ``P proposer`` with its lease (compare
``create_revision == 0``); the one that did is the proposer until its lease expires
(``LEASE_TTL_S`` without a keep-alive) or it steps down. It appends block ``h`` with one
transaction that compares ``create_revision(P blocks/h) == 0`` **and**
``value(P proposer) == its own id``: so each height is written at most once, and only by
the current proposer (a deposed one fails its compare and never writes). A block is
acknowledged only after that transaction committed, i.e. after a majority of etcd
members has it on disk.

Every server (the proposer too) watches ``P blocks/`` and verifies and applies each block
in height order (the checks of a replay: signatures, validity, outcomes, state hash), so
each serves views, blocks and event streams from its own copy. A server that is not the
proposer forwards submissions to the proposer's URL, then waits until it has applied the
block before it answers. A new proposer first reads every block it has not applied yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from quorumkeep.ledger.blocks import Block, block_event_kinds
from quorumkeep.ledger.canonical import parse_json
from quorumkeep.ledger.chain import LedgerState
from quorumkeep.ledger.errors import LedgerCorrupted, LedgerError
from quorumkeep.ledger.etcd import (
    EtcdAsync,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdSync,
    KeyValue,
    prefix_end,
)
from quorumkeep.ledger.node import (
    DEFAULT_IDLE_BLOCK_MS,
    BlockBackend,
    EventLog,
    LedgerNode,
    Receipt,
    _Submission,
)
from quorumkeep.ledger.proposer_lease import ProposerLease
from quorumkeep.ledger.snapshot import DEFAULT_SNAPSHOT_EVERY_BLOCKS
from quorumkeep.ledger.storage import BlockReader, StorageError
from quorumkeep.ledger.transaction import SignedTransaction
from quorumkeep.net.http_client import default_verify

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "quorumkeep/ledger/"
LEASE_TTL_S = 2
CAMPAIGN_TIMEOUT_S = LEASE_TTL_S / 2
"""Each lease and proposer-key request gives up on a member after this long and tries the
next: a member whose write waits on a dead Raft leader (etcd holds it up to 7 s) must not
keep the keep-alives back until the lease expires."""
PAGE = 500
FORWARD_TIMEOUT_S = 30.0
APPLY_WAIT_S = 10.0


def block_key(prefix: bytes, height: int) -> bytes:
    return prefix + b"blocks/" + b"%020d" % height


class LostProposal(Exception):
    """The block could not be appended: another proposer wrote the height, or this
    server is no longer the proposer."""


def event_key(prefix: bytes, kind: str, height: int) -> bytes:
    return prefix + b"events/" + kind.encode() + b"/" + b"%020d" % height


class EtcdBackend:
    """Blocks in etcd (``BlockBackend``). The transaction index is kept in memory for the
    blocks this server applied; an older transaction still in the replay window is found
    by reading the blocks after the one it names (``named_height``)."""

    def __init__(self, endpoints: Sequence[str], prefix: bytes) -> None:
        self.prefix = prefix
        self._writer = EtcdSync(endpoints)
        self._reader = EtcdSync(endpoints)
        self.holder: tuple[bytes, bytes] | None = None  # (proposer key, our value)
        self.tx_heights: dict[bytes, int] = {}
        self.named_height: Callable[[bytes], int | None] = lambda _: None
        self.window = 0  # tx_validity_blocks

    def append(self, block: Block) -> None:
        from quorumkeep.ledger.etcd import create_txn

        key = block_key(self.prefix, block.height)
        if self.holder is None:
            raise LostProposal("not the proposer")
        try:
            also = [
                (event_key(self.prefix, k, block.height), b"") for k in block_event_kinds(block)
            ]
            body = self._writer.post(
                "/v3/kv/txn", create_txn(key, block.body, holder=self.holder, also=also)
            )
            done = bool(body.get("succeeded", False))
        except EtcdError:
            done = False
        if not done:
            # The first attempt may have committed with its answer lost: then it is ours.
            kvs, _, _ = self._reader.range(key)
            if not kvs or kvs[0].value != block.body:
                raise LostProposal(f"block {block.height} was not appended")

    def write_snapshot(self, height: int, block_hash: bytes, body: bytes) -> None:
        """Put the snapshot (only the proposer takes them; a reader verifies it against
        the block at its height before using it)."""
        self._writer.put(self.prefix + b"snapshot", body)

    def block_body(self, height: int) -> bytes | None:
        kvs, _, _ = self._reader.range(block_key(self.prefix, height))
        return kvs[0].value if kvs else None

    def block_bodies(self, heights: list[int]) -> list[tuple[int, bytes]]:
        found = []
        for height in heights:
            body = self.block_body(height)
            if body is not None:
                found.append((height, body))
        return found

    def transaction_height(self, tx_hash: bytes) -> int | None:
        found = self.tx_heights.get(tx_hash)
        named = self.named_height(tx_hash) if found is None else None
        if named is None:
            return found
        for height in range(named + 1, named + self.window + 1):
            body = self.block_body(height)
            if body is None:
                break
            if any(tx.signed.hash == tx_hash for tx in Block.from_body(body).transactions):
                self.tx_heights[tx_hash] = height
                return height
        return None

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def _local_genesis(data_dir: Path) -> bytes | None:
    if not (data_dir / "ledger.sqlite").exists():
        return None
    reader = BlockReader(data_dir)
    try:
        return reader.block_body(0)
    finally:
        reader.close()


def load_chain(
    etcd: EtcdSync,
    prefix: bytes,
    on_block: Callable[[Block], None],
    start_state: LedgerState | None = None,
) -> tuple[LedgerState, int]:
    """Verify and replay the blocks in etcd (after ``start_state``'s, or all of them);
    (state, etcd revision read at)."""
    state: LedgerState | None = start_state
    start = block_key(prefix, 0 if state is None else state.height + 1)
    end = prefix_end(prefix + b"blocks/")
    revision = 0
    while True:
        kvs, revision, more = etcd.range(start, end, limit=PAGE)
        rows = []
        for kv in kvs:
            height = int(kv.key[len(prefix) + len(b"blocks/") :])
            body = kv.value
            rows.append((height, Block.from_body(body).hash, body))
        if rows:
            state = LedgerState.replay(rows, on_block, start=state)
        if not more or not kvs:
            break
        start = kvs[-1].key + b"\x00"
    if state is None:
        raise LedgerCorrupted(0, "no genesis block in etcd")
    return state, revision


def _block(etcd: EtcdSync, prefix: bytes, height: int) -> Block | None:
    kvs, _, _ = etcd.range(block_key(prefix, height))
    return Block.from_body(kvs[0].value) if kvs else None


def load_snapshot(etcd: EtcdSync, prefix: bytes) -> LedgerState | None:
    """The state of ``P snapshot`` if it verifies against its block in etcd (else None,
    logged)."""
    kvs, _, _ = etcd.range(prefix + b"snapshot")
    if not kvs:
        return None
    try:
        snapshot = parse_json(kvs[0].value)
        genesis = _block(etcd, prefix, 0)
        block = _block(etcd, prefix, int(snapshot["height"]))
        if genesis is None or block is None:
            raise ValueError("its block is not in etcd")
        state = LedgerState.replay([(0, genesis.hash, genesis.body)])
        state.restore_snapshot(snapshot, block)
    except (ValueError, KeyError, TypeError, LedgerError, LedgerCorrupted) as exc:
        log.warning("the snapshot in etcd does not verify (%s); replaying the chain", exc)
        return None
    return state


def event_index(etcd: EtcdSync, prefix: bytes) -> list[tuple[str, int]]:
    """(kind, height) of every ``P events/`` key, by height."""
    start = prefix + b"events/"
    end = prefix_end(start)
    rows: list[tuple[str, int]] = []
    while True:
        kvs, _, more = etcd.range(start, end, limit=5000, keys_only=True)
        for kv in kvs:
            kind, _, height = kv.key[len(prefix) + len(b"events/") :].rpartition(b"/")
            rows.append((kind.decode(), int(height)))
        if not more or not kvs:
            break
        start = kvs[-1].key + b"\x00"
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


class EtcdLedgerNode(LedgerNode):
    """A ledger server of a replicated ledger (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        endpoints: Sequence[str],
        *,
        prefix: str = DEFAULT_PREFIX,
        idle_block_ms: int = DEFAULT_IDLE_BLOCK_MS,
        clock_ms: Callable[[], int] | None = None,
        snapshot_every_blocks: int = DEFAULT_SNAPSHOT_EVERY_BLOCKS,
    ) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix.encode()
        self.node_id = os.urandom(16).hex()
        self.advertise_url = ""
        self.is_proposer = False
        self._proposer_url: str | None = None
        self._revision = 0
        super().__init__(
            data_dir,
            idle_block_ms=idle_block_ms,
            clock_ms=clock_ms,
            snapshot_every_blocks=snapshot_every_blocks,
        )
        self._etcd: EtcdAsync | None = None
        self._lease_etcd: EtcdAsync | None = None
        self._lease = ProposerLease(LEASE_TTL_S)
        self._tasks: list[asyncio.Task[None]] = []
        self._state_lock: asyncio.Lock | None = None
        self._forward: httpx.AsyncClient | None = None

    # --- opening ---------------------------------------------------------------------

    def _open(self) -> tuple[BlockBackend, LedgerState, int]:
        backend = EtcdBackend(self.endpoints, self.prefix)
        try:
            etcd = EtcdSync(self.endpoints)
            try:
                self._publish_genesis(etcd)
                start = load_snapshot(etcd, self.prefix)
                snapshot_height = -1
                if start is not None:
                    snapshot_height = start.height
                    self.events.load_index(event_index(etcd, self.prefix), start.height)
                state, self._revision = load_chain(etcd, self.prefix, self._indexed(backend), start)
                if start is not None:
                    log.warning(
                        "started from the snapshot at block %d; replayed %d blocks after it",
                        snapshot_height,
                        state.height - snapshot_height,
                    )
            finally:
                etcd.close()
        except EtcdError as exc:
            backend.close()
            raise StorageError(f"etcd: {exc}") from None
        except BaseException:
            backend.close()
            raise
        backend.named_height = lambda tx_hash: self.state.named_height(tx_hash)
        backend.window = state.tx_validity_blocks
        return backend, state, snapshot_height

    def _indexed(self, backend: EtcdBackend) -> Callable[[Block], None]:
        def on_block(block: Block) -> None:
            self.events.add_block(block)
            for tx in block.transactions:
                backend.tx_heights[tx.signed.hash] = block.height

        return on_block

    def _publish_genesis(self, etcd: EtcdSync) -> None:
        """Put this data directory's genesis into an empty etcd; refuse another chain."""
        local = _local_genesis(self.data_dir)
        key = block_key(self.prefix, 0)
        kvs, _, _ = etcd.range(key)
        if not kvs:
            if local is None:
                raise StorageError(
                    f"etcd holds no ledger under {self.prefix.decode()!r} and {self.data_dir} "
                    "holds no genesis to start one (run `ledger init`)"
                )
            etcd.create(key, local)
            kvs, _, _ = etcd.range(key)
        if local is not None and kvs and kvs[0].value != local:
            raise StorageError(
                f"{self.data_dir} holds another ledger than etcd (genesis differs); refusing"
            )

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stable = asyncio.Event()
        self._stable.set()
        self._new_block = asyncio.Condition()
        self._state_lock = asyncio.Lock()
        self._etcd = EtcdAsync(self.endpoints)
        self._lease_etcd = EtcdAsync(self.endpoints, timeout=CAMPAIGN_TIMEOUT_S)
        self._forward = httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S, verify=default_verify())
        self._tasks = [
            asyncio.create_task(self._follow(), name="ledger-etcd-follow"),
            asyncio.create_task(self._campaign(), name="ledger-etcd-campaign"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().stop()
        if self._lease_etcd is not None:
            if self._lease.held:
                with contextlib.suppress(EtcdError, httpx.HTTPError):
                    # A successor need not wait the TTL.
                    await self._lease_etcd.revoke(self._lease.lease_id)
            await self._lease_etcd.aclose()
        if self._etcd is not None:
            await self._etcd.aclose()
        if self._forward is not None:
            await self._forward.aclose()

    def _producing(self) -> bool:
        return not self._stopping and self.is_proposer

    async def _snapshot(self) -> None:
        """Only the proposer writes the snapshot (a follower's could be older)."""
        if self.is_proposer:
            await super()._snapshot()

    # --- proposer election ------------------------------------------------------------

    @property
    def _proposer_key(self) -> bytes:
        return self.prefix + b"proposer"

    @property
    def _proposer_value(self) -> bytes:
        return json.dumps(
            {"id": self.node_id, "url": self.advertise_url}, sort_keys=True, separators=(",", ":")
        ).encode()

    async def _campaign(self) -> None:
        """Hold a lease and try to create the proposer key with it, every quarter TTL
        (the rules are proposer_lease.py's)."""
        assert self._lease_etcd is not None
        etcd = self._lease_etcd
        loop = asyncio.get_running_loop()
        lease = self._lease
        failing = False
        while not self._stopping:
            try:
                if lease.held:
                    sent = loop.time()
                    if not lease.renewed(await etcd.keepalive(lease.lease_id), sent):
                        log.info("the proposer lease expired in etcd; taking a new one")
                        self._step_down("the proposer lease expired")
                if not lease.held:
                    sent = loop.time()
                    lease.granted(await etcd.grant(LEASE_TTL_S), sent)
                await etcd.create(self._proposer_key, self._proposer_value, lease=lease.lease_id)
                current = await etcd.get(self._proposer_key)
                self._observe_proposer(current)
                won = current is not None and lease.wins(
                    current.value, current.lease, self._proposer_value
                )
                if won and not self.is_proposer:
                    await self._become_proposer()
                elif not won and self.is_proposer:
                    self._step_down("another server holds the proposer key")
                if failing:
                    log.info("etcd answers the proposer campaign again")
                    failing = False
            except EtcdLeaseNotFound as exc:
                log.info("etcd no longer knows the proposer lease (%s); taking a new one", exc)
                lease.drop()
                self._step_down("the proposer lease expired")
            except (EtcdError, httpx.HTTPError) as exc:
                if not failing:  # the first failure of a run; the rest until it recovers
                    log.info("proposer campaign: etcd did not answer (%s); retrying", exc)
                    failing = True
            if self.is_proposer and lease.must_step_down(loop.time()):
                self._step_down("etcd did not renew the proposer lease within half its TTL")
            await asyncio.sleep(LEASE_TTL_S / 4)

    def _observe_proposer(self, current: KeyValue | None) -> None:
        """Remember (and log a change of) the proposer's URL, where submissions go."""
        url = None
        if current is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                url = str(json.loads(current.value)["url"])
        if url != self._proposer_url:
            log.info("the ledger's proposer is now %s", url or "nobody (the key is free)")
        self._proposer_url = url

    async def _become_proposer(self) -> None:
        """Read every block not applied yet, then produce on top of the newest."""
        await self._catch_up()
        assert isinstance(self.backend, EtcdBackend)
        self.backend.holder = (self._proposer_key, self._proposer_value)
        self.is_proposer = True
        log.warning("proposer of the ledger from block %d on", self.state.height + 1)
        self._start_producing()

    def _step_down(self, reason: str) -> None:
        if not self.is_proposer:
            return
        log.warning("no longer the proposer: %s", reason)
        self.is_proposer = False
        assert isinstance(self.backend, EtcdBackend)
        self.backend.holder = None
        if self._wakeup is not None:
            self._wakeup.set()
        self._fail_pending(LedgerError("LedgerUnavailable", "the proposer changed; retry"))

    # --- producing -------------------------------------------------------------------

    async def _store_block(self, block: Block, batch: list[_Submission]) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self.backend.append, block)
        except Exception as exc:
            # The state is ahead of etcd by this block: step down and rebuild it from etcd.
            error = LedgerError("LedgerUnavailable", "the block was not replicated; retry")
            for submission in batch:
                if not submission.future.done():
                    submission.future.set_exception(error)
            self._step_down(f"block {block.height} not appended ({exc})")
            await self._resync()
            return False
        assert isinstance(self.backend, EtcdBackend)
        for tx in block.transactions:
            self.backend.tx_heights[tx.signed.hash] = block.height
        return True

    async def _resync(self) -> None:
        """Rebuild the state from etcd (after a block this server built was not stored)."""
        assert self._stable is not None
        loop = asyncio.get_running_loop()
        self._stable.clear()
        try:
            while not self._stopping:
                try:
                    state, events = await loop.run_in_executor(None, self._load_fresh)
                except EtcdError:
                    await asyncio.sleep(0.5)
                    continue
                assert self._state_lock is not None
                async with self._state_lock:
                    self.state, self.events = state, events
                    self.committed_height = state.height
                    self.committed_hash = state.head_hash
                    self.committed_timestamp_ms = state.timestamp_ms
                return
        finally:
            self._stable.set()

    def _load_fresh(self) -> tuple[LedgerState, EventLog]:
        events = EventLog()
        backend = self.backend
        assert isinstance(backend, EtcdBackend)

        def on_block(block: Block) -> None:
            events.add_block(block)
            for tx in block.transactions:
                backend.tx_heights[tx.signed.hash] = block.height

        etcd = EtcdSync(self.endpoints)
        try:
            state, _ = load_chain(etcd, self.prefix, on_block)
        finally:
            etcd.close()
        return state, events

    # --- following -------------------------------------------------------------------

    async def _follow(self) -> None:
        assert self._etcd is not None
        start = self.prefix + b"blocks/"
        end = prefix_end(start)
        revision = self._revision + 1
        while not self._stopping:
            try:
                async for kv in self._etcd.watch(start, end, revision):
                    revision = kv.mod_revision + 1
                    await self._apply(kv.value)
            except (EtcdError, httpx.HTTPError) as exc:
                log.info("etcd watch interrupted: %s", exc)
                await asyncio.sleep(0.2)
            with contextlib.suppress(EtcdError, httpx.HTTPError):
                revision = max(revision, await self._catch_up() + 1)

    async def _catch_up(self) -> int:
        """Apply every stored block above the head; the etcd revision read at."""
        assert self._etcd is not None
        end = prefix_end(self.prefix + b"blocks/")
        revision = 0
        while True:
            kvs, revision, more = await self._etcd.range(
                block_key(self.prefix, self.state.height + 1), end, limit=PAGE
            )
            for kv in kvs:
                await self._apply(kv.value)
            if not more or not kvs:
                return revision

    async def _apply(self, body: bytes) -> None:
        assert self._state_lock is not None and self._stable is not None
        async with self._state_lock:
            block = Block.from_body(body)
            if block.height <= self.state.height:
                return  # ours, or already applied
            if block.height != self.state.height + 1:
                raise EtcdError(f"block {block.height} arrived before {self.state.height + 1}")
            self._stable.clear()
            try:
                self.state.apply_block(block)
            except LedgerCorrupted as exc:
                log.critical("block %d from etcd does not verify: %s", block.height, exc)
                self._fatal(str(exc), [])
                raise
            assert isinstance(self.backend, EtcdBackend)
            for tx in block.transactions:
                self.backend.tx_heights[tx.signed.hash] = block.height
            self._committed(block)
        await self._notify_block()

    # --- submissions -----------------------------------------------------------------

    async def submit(self, signed: SignedTransaction) -> Receipt:
        if self.is_proposer:
            return await super().submit(signed)
        if self.failed is not None:
            raise LedgerError("LedgerUnavailable", self.failed)
        if self._stopping:
            raise LedgerError("ShuttingDown", "the ledger is shutting down")
        signed.verify()
        self.state.check(signed, timestamp_ms=self._clock_ms())
        receipt = await self._forward_to_proposer(signed)
        await self._wait_applied(receipt.block_height)
        return receipt

    async def _forward_to_proposer(self, signed: SignedTransaction) -> Receipt:
        url = self._proposer_url
        if not url or self._forward is None or url == self.advertise_url:
            raise LedgerError("LedgerUnavailable", "no proposer is known yet; retry")
        try:
            response = await self._forward.post(f"{url}/v1/transactions", json=signed.to_json())
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LedgerError("LedgerUnavailable", f"the proposer is unreachable ({exc})") from None
        if response.status_code != 200:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise LedgerError(
                str(error.get("code", "LedgerUnavailable")),
                str(error.get("message", "the proposer refused")),
                status=response.status_code,
            )
        outcome: dict[str, Any] = {"status": body["status"]}
        if body["status"] == "success":
            outcome.update(value=body.get("value"), events=body.get("events", []))
        else:
            outcome["error"] = body.get("error")
        return Receipt(str(body["tx_hash"]), int(body["block_height"]), outcome)

    async def _wait_applied(self, height: int) -> None:
        """Answer only once this server shows the block (a reader here sees the write)."""
        assert self._new_block is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(APPLY_WAIT_S), self._new_block:
                await self._new_block.wait_for(lambda: self.committed_height >= height)
