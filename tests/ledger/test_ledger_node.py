"""The block producer in-process: event paging from memory and from disk, batching, views."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import backup_service_args, init_args, make_ledger

from quorumkeep.ledger import node as node_module
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.node import LedgerNode, Receipt
from quorumkeep.ledger.transaction import FunctionCall, Transaction

ACCOUNTS = ("alice", "bob", "carol")


async def _call(
    node: LedgerNode, signer: AccountSigner, nonce: int, method: str, args: dict[str, Any]
) -> Receipt:
    tx = Transaction(
        chain_id=node.state.chain_id,
        signer_account=signer.account,
        public_key=signer.public_key,
        nonce=nonce,
        block_height=node.committed_height,
        actions=(FunctionCall(method, args),),
    )
    return await node.submit(signer.sign(tx))


async def _all_events(node: LedgerNode, limit: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = -1
    while True:
        page, cursor_next = await node.events_since(cursor, 0, limit)
        if not page:
            return events
        heights = [e["height"] for e in page]
        assert heights == sorted(heights) and heights[0] > cursor
        events.extend(page)
        cursor = cursor_next


@pytest.mark.parametrize("in_memory", [3, 10_000])
def test_events_page_in_whole_blocks_from_memory_and_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: int
) -> None:
    monkeypatch.setattr(node_module, "EVENTS_IN_MEMORY", in_memory)
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)
    signers = ledger.signers

    async def run() -> tuple[list[Receipt], list[dict[str, Any]], list[dict[str, Any]], int]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            receipts = [await _call(node, signers["alice"], 1, "init", init_args(list(ACCOUNTS)))]
            for nonce in range(1, 4):  # three blocks of three concurrent transactions
                receipts += await asyncio.gather(
                    *[
                        _call(node, signers[a], nonce + (a == "alice"), "register_backup_service",
                              backup_service_args())
                        for a in ACCOUNTS
                    ]
                )  # fmt: skip
            small = await _all_events(node, limit=2)
            large = await _all_events(node, limit=1000)
            floor = node.events.floor
        finally:
            await node.stop()
        return receipts, small, large, floor

    receipts, small, large, floor = asyncio.run(run())
    assert (floor > 0) == (in_memory == 3)  # the small window really sent reads to disk
    expected = [
        (r.block_height, r.tx_hash, e["kind"], e["data"])
        for r in receipts
        for e in r.outcome["events"]
    ]
    for got in (small, large):
        assert [(e["height"], e["tx_hash"], e["kind"], e["data"]) for e in got] == expected
        per_block: dict[int, list[int]] = {}
        for e in got:
            per_block.setdefault(e["height"], []).append(e["index"])
        assert all(indexes == list(range(len(indexes))) for indexes in per_block.values())


def test_concurrent_submissions_share_blocks(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)

    async def run() -> list[Receipt]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            await _call(node, ledger.signers["alice"], 1, "init", init_args(list(ACCOUNTS)))
            bob = ledger.signers["bob"]
            return await asyncio.gather(
                *[
                    _call(node, bob, nonce, "register_backup_service", backup_service_args())
                    for nonce in range(1, 21)
                ]
            )
        finally:
            await node.stop()

    receipts = asyncio.run(run())
    assert all(r.outcome["status"] == "success" for r in receipts)
    # Submitted in one go: they go into one block, not twenty.
    assert len({r.block_height for r in receipts}) == 1


def test_restarted_node_serves_the_same_events(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)

    async def first() -> list[dict[str, Any]]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            await _call(node, ledger.signers["alice"], 1, "init", init_args(list(ACCOUNTS)))
            await _call(node, ledger.signers["bob"], 1, "register_backup_service",
                        backup_service_args())  # fmt: skip
            return await _all_events(node, 1000)
        finally:
            await node.stop()

    async def second() -> list[dict[str, Any]]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            return await _all_events(node, 1000)
        finally:
            await node.stop()

    before = asyncio.run(first())
    assert len(before) == 3
    assert asyncio.run(second()) == before


def test_a_failed_commit_stops_the_ledger_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)
    stops: list[str] = []

    async def run() -> tuple[Receipt, str]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        node.on_fatal = stops.append
        await node.start()
        try:
            acknowledged = await _call(
                node, ledger.signers["alice"], 1, "init", init_args(list(ACCOUNTS))
            )
            node.store._conn.close()  # the disk goes away under the producer
            with pytest.raises(LedgerError) as refused:
                await _call(
                    node, ledger.signers["bob"], 1, "register_backup_service",
                    backup_service_args(),
                )  # fmt: skip
            with pytest.raises(LedgerError) as reading:
                await node.committed()
            assert refused.value.code == reading.value.code == "LedgerUnavailable"
            return acknowledged, refused.value.message
        finally:
            await node.stop()

    acknowledged, message = asyncio.run(run())
    assert "restart" in message
    assert stops and "could not be stored" in stops[0]

    async def restart() -> tuple[int, Any]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            state = await node.committed()
            return state.height, state.contract.view("backup_service_info", {"account": "bob"})
        finally:
            await node.stop()

    height, backup = asyncio.run(restart())
    assert height == acknowledged.block_height  # the block that failed to commit is gone
    assert backup is None
