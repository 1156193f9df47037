"""The block producer in-process: event paging from memory and from disk, batching, views."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import backup_service_args, init_args, make_ledger

from quorumkeep.ledger import node as node_module
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.event_filter import EventFilter
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
            node.backend.store._conn.close()  # type: ignore[attr-defined]  # the disk goes away
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


# --- the kind filter -------------------------------------------------------------------

ONLY_REGISTERED = EventFilter(frozenset({"backup_service_registered"}), exclude=False)
FILTERS = [
    ONLY_REGISTERED,
    EventFilter(frozenset({"backup_service_registered"}), exclude=True),
    EventFilter(frozenset({"participants_changed", "add_domains_voted"}), exclude=False),
    EventFilter(frozenset({"no_such_kind"}), exclude=False),  # unknown: matches nothing
    EventFilter(frozenset({"no_such_kind"}), exclude=True),  # unknown: excludes nothing
]


async def _filtered_history(node: LedgerNode, signers: dict[str, AccountSigner]) -> None:
    """Blocks 1-5: one kind, two kinds per block, mixed blocks, a lone matching block."""
    alice, bob, carol = (signers[a] for a in ACCOUNTS)
    vote = {"domains": [{"scheme": "Ed25519"}]}
    await _call(node, alice, 1, "init", init_args(list(ACCOUNTS)))
    for voter, v_nonce, registrant, r_nonce in [(alice, 2, bob, 1), (bob, 2, carol, 1)]:
        await asyncio.gather(
            _call(node, voter, v_nonce, "vote_add_domains", vote),
            _call(node, registrant, r_nonce, "register_backup_service", backup_service_args()),
        )
    await asyncio.gather(
        *[
            _call(node, s, n, "register_backup_service", backup_service_args())
            for s, n in ((alice, 3), (bob, 3), (carol, 2))
        ]
    )
    await _call(node, alice, 4, "register_backup_service", backup_service_args())


async def _pages(
    node: LedgerNode, limit: int, event_filter: EventFilter | None
) -> list[tuple[list[dict[str, Any]], int]]:
    pages = []
    cursor = -1
    while True:
        page, cursor = await node.events_since(cursor, 0, limit, event_filter)
        pages.append((page, cursor))
        if not page:
            return pages


@pytest.mark.parametrize("in_memory", [3, 10_000])
def test_filtered_events_page_from_memory_and_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: int
) -> None:
    monkeypatch.setattr(node_module, "EVENTS_IN_MEMORY", in_memory)
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)

    async def run() -> tuple[list[dict[str, Any]], dict[Any, Any], int, int]:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            await _filtered_history(node, ledger.signers)
            everything = await _all_events(node, 1000)
            results = {
                (f, limit): await _pages(node, limit, f)
                for f in [None, *FILTERS]
                for limit in (1, 2, 1000)
            }
            return everything, results, node.events.floor, node.committed_height
        finally:
            await node.stop()

    everything, results, floor, head = asyncio.run(run())
    assert (floor > 0) == (in_memory == 3)  # the small window really sent reads to disk
    assert head == 5 and len({e["kind"] for e in everything}) == 4
    for (event_filter, limit), pages in results.items():
        expected = [
            e for e in everything if event_filter is None or event_filter.matches(e["kind"])
        ]
        got = [e for page, _ in pages for e in page]
        assert got == expected, (event_filter, limit)  # same dicts: same `index` in the block
        *full, (last_page, last_cursor) = pages
        assert last_page == [] and last_cursor == head  # past every filtered-out block
        for page, cursor in full:
            heights = [e["height"] for e in page]
            assert len(page) <= limit or len(set(heights)) == 1  # limit counts matching events
            # whole blocks: the next page starts above this one's cursor
            assert cursor >= heights[-1]
            assert all(e["height"] <= cursor for e in page)
            after = [e for e in expected if e["height"] > heights[-1]]
            assert cursor == (heights[-1] if after else head)


def test_filtered_long_poll_waits_for_a_matching_event(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)
    alice, bob = ledger.signers["alice"], ledger.signers["bob"]
    vote = {"domains": [{"scheme": "Ed25519"}]}

    async def run() -> None:
        node = LedgerNode(ledger.path, idle_block_ms=10_000)
        await node.start()
        try:
            await _call(node, alice, 1, "init", init_args(list(ACCOUNTS)))
            since = node.committed_height
            poll = asyncio.create_task(node.events_since(since, 30, event_filter=ONLY_REGISTERED))
            voted = await _call(node, alice, 2, "vote_add_domains", vote)  # does not match
            await asyncio.sleep(0.3)
            assert not poll.done()  # a block with only non-matching events did not end it
            registered = await _call(node, bob, 1, "register_backup_service",
                                     backup_service_args())  # fmt: skip
            events, cursor = await asyncio.wait_for(poll, 5)
            assert [(e["kind"], e["height"]) for e in events] == [
                ("backup_service_registered", registered.block_height)
            ]
            assert voted.block_height < registered.block_height == cursor

            # Timing out: nothing matches, the cursor still moves past the non-matching block.
            voted = await _call(node, bob, 2, "vote_add_domains", vote)
            started = time.monotonic()
            events, cursor = await node.events_since(since, 0.3, event_filter=FILTERS[3])
            assert events == [] and time.monotonic() - started >= 0.25
            assert cursor == voted.block_height == node.committed_height
        finally:
            await node.stop()

    asyncio.run(run())


def test_matching_heights_merges_kinds_without_duplicates() -> None:
    log = node_module.EventLog()
    log.kind_heights = {"a": [1, 4, 6], "b": [2, 4, 7], "c": [3, 5]}
    log.heights = [1, 2, 3, 4, 5, 6, 7]
    a_or_b = EventFilter(frozenset({"a", "b"}), exclude=False)
    assert log.matching_heights(0, a_or_b, 10) == [1, 2, 4, 6, 7]
    assert log.matching_heights(1, a_or_b, 3) == [2, 4, 6]
    assert log.matching_heights(7, a_or_b, 3) == []
    assert log.matching_heights(2, EventFilter(frozenset({"a"}), exclude=True), 10) == [3, 4, 5, 7]
    assert log.matching_heights(0, EventFilter(frozenset({"z"}), exclude=False), 10) == []
    assert log.matching_heights(3, None, 2) == [4, 5]
    assert log.last_matching(a_or_b) == 7
    assert log.last_matching(EventFilter(frozenset({"c"}), exclude=False)) == 5
    assert log.last_matching(EventFilter(frozenset({"z"}), exclude=False)) == -1
