"""Snapshots, start-up from the newest one that verifies, pruning (real SQLite files)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from ledger_helpers import LedgerProcess, cli_command

from quorumkeep.bench.ledger_history import HistoryBuilder
from quorumkeep.devnet import forkserver
from quorumkeep.ledger import snapshot
from quorumkeep.ledger.blocks import Block
from quorumkeep.ledger.canonical import canonical_json, parse_json
from quorumkeep.ledger.chain import LedgerState
from quorumkeep.ledger.errors import LedgerCorrupted
from quorumkeep.ledger.node import LedgerNode
from quorumkeep.ledger.storage import DB_NAME, BlockStore


def _history(data_dir: Path, transactions: int = 60, per_block: int = 3) -> HistoryBuilder:
    builder = HistoryBuilder(data_dir)
    builder.build(transactions, per_block)
    return builder


def _full_replay(data_dir: Path) -> LedgerState:
    store = BlockStore(data_dir)
    try:
        return LedgerState.replay(store.iter_blocks())
    finally:
        store.close()


def _restore(data_dir: Path) -> snapshot.Restored:
    store = BlockStore(data_dir)
    try:
        return snapshot.restore(store)
    finally:
        store.close()


def _sql(data_dir: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.execute(statement, args)
    conn.close()


def test_restore_takes_the_newest_snapshot_and_replays_only_the_tail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    builder = _history(data)
    snapshot.take(builder.store, builder.state)
    at = builder.state.height
    builder.build(9, 3)  # three more blocks after the snapshot
    head, state_hash = builder.state.height, builder.state.state_hash()
    builder.close(final_snapshot=False)
    replayed: list[int] = []
    store = BlockStore(data)
    try:
        restored = snapshot.restore(store, lambda b: replayed.append(b.height))
    finally:
        store.close()
    assert restored.snapshot_height == at
    assert replayed == list(range(at + 1, head + 1))
    assert restored.state.height == head and restored.state.state_hash() == state_hash
    full = _full_replay(data)
    assert canonical_json(restored.state.snapshot_json()) == canonical_json(full.snapshot_json())


def test_a_snapshot_that_does_not_verify_is_skipped_for_an_older_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    builder = _history(data)
    snapshot.take(builder.store, builder.state)
    older = builder.state.height
    builder.build(6, 3)
    snapshot.take(builder.store, builder.state)
    newer = builder.state.height
    builder.close(final_snapshot=False)
    store = BlockStore(data)
    height, block_hash, raw = store.snapshots()[0]
    store.close()
    assert height == newer
    edited = parse_json(raw)
    edited["state"]["contract"]["next_request_id"] = 7  # a state its block never had
    _sql(data, "UPDATE snapshots SET body = ? WHERE height = ?", canonical_json(edited), newer)
    with caplog.at_level(logging.WARNING):
        restored = _restore(data)
    assert restored.snapshot_height == older
    assert "does not verify" in caplog.text
    assert restored.state.state_hash() == _full_replay(data).state_hash()
    assert block_hash == restored.state.head_hash  # the tail was replayed up to the head


def test_deleting_the_newest_blocks_after_a_snapshot_is_detected(tmp_path: Path) -> None:
    data = tmp_path / "data"
    builder = _history(data)
    builder.close()  # a clean stop: snapshot at the head
    head = builder.state.height
    _sql(data, "DELETE FROM blocks WHERE height >= ?", head - 1)
    with pytest.raises(LedgerCorrupted, match="newest blocks were deleted"):
        _restore(data)
    _sql(data, "DELETE FROM snapshots")  # even with the snapshots gone too
    with pytest.raises(LedgerCorrupted, match="newest blocks were deleted"):
        _restore(data)


def test_prune_keeps_the_chain_verifiable_from_the_anchor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    builder = _history(data, transactions=90, per_block=3)
    builder.close()
    head, state_hash = builder.state.height, builder.state.state_hash()
    store = BlockStore(data)
    try:
        result = snapshot.prune(store, keep_blocks=5)
        assert (result.snapshot_height, result.first_kept) == (head, head - 5)
        assert result.deleted == head - 6  # blocks 1 .. head-6
        assert store.block(0) is not None and store.block(1) is None
        anchor_height, anchor_hash = store.anchor() or (0, b"")
        assert anchor_height == head - 6
        first = store.block(head - 5)
        assert first is not None
        assert Block.from_body(first[1]).prev_hash == anchor_hash
        assert snapshot.prune(store, keep_blocks=5).deleted == 0  # nothing more to do
    finally:
        store.close()
    restored = _restore(data)
    assert restored.state.height == head and restored.state.state_hash() == state_hash
    # Without a snapshot that verifies, a pruned chain cannot be rebuilt: refuse.
    _sql(data, "UPDATE snapshots SET block_hash = zeroblob(32)")
    with pytest.raises(LedgerCorrupted, match="pruned and no snapshot verifies"):
        _restore(data)


def test_prune_without_a_snapshot_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _history(data).close(final_snapshot=False)
    store = BlockStore(data)
    try:
        with pytest.raises(ValueError, match="no snapshot"):
            snapshot.prune(store, keep_blocks=0)
        assert store.oldest_height_above_genesis() == 1
    finally:
        store.close()


def test_a_node_snapshots_at_a_clean_stop_and_serves_old_events_from_disk(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    builder = _history(data, transactions=30, per_block=3)
    builder.close(final_snapshot=False)
    head = builder.state.height

    async def events_and_stop(every: int) -> tuple[int, list[tuple[int, int]], int]:
        node = LedgerNode(data, idle_block_ms=600_000, snapshot_every_blocks=every)
        await node.start()
        try:
            events: list[tuple[int, int]] = []
            cursor = -1
            while True:
                page, cursor = await node.events_since(cursor, 0)
                if not page:
                    break
                events += [(e["height"], e["index"]) for e in page]
            return node._snapshots.last_height, events, node.events.floor
        finally:
            await node.stop()

    first_snapshot, events, floor = asyncio.run(events_and_stop(1000))
    assert first_snapshot == -1 and floor == -1  # no snapshot: the whole chain was replayed
    assert _restore(data).snapshot_height == head  # ... and the stop took one
    again, events_again, floor = asyncio.run(events_and_stop(1000))
    assert again == head and floor == head  # from the snapshot: old events come from disk
    assert events_again == events and len(events) == 30 + 2  # every call's event, and init's


@pytest.mark.slow
def test_prune_and_verify_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    builder = _history(data, transactions=45, per_block=3)
    builder.close()
    head = builder.state.height

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return forkserver.run(cli_command(*args), capture_output=True, text=True, timeout=120)

    server = LedgerProcess(data, idle_block_ms=None).start()
    try:
        busy = cli("ledger", "prune", "--data", str(data), "--keep-blocks", "2")
        assert busy.returncode == 1 and "in use by another ledger process" in busy.stderr
    finally:
        assert server.terminate() == 0
    bad = cli("ledger", "prune", "--data", str(data), "--keep-blocks", "-1")
    assert bad.returncode == 2
    pruned = cli("ledger", "prune", "--data", str(data), "--keep-blocks", "2", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {
        "snapshot_height": head,
        "first_kept": head - 2,
        "deleted_blocks": head - 3,
    }
    checked = cli("ledger", "verify", "--data", str(data), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {"first_checked": head - 2, "head": head}
    server = LedgerProcess(data, idle_block_ms=None).start()  # starts from the snapshot
    try:
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{server.url}/v1/status").json()["height"] == head
            gone = http.get(f"{server.url}/v1/blocks/1")
            assert gone.status_code == 404 and gone.json()["error"]["code"] == "BlockNotFound"
            assert http.get(f"{server.url}/v1/blocks/{head - 2}").status_code == 200
    finally:
        server.kill()
