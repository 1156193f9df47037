"""The incremental state hash: the requests' sparse Merkle root (pure, no processes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.ledger.state_hash import DEPTH, EMPTY, RequestTree, leaf_hash, state_hash


@dataclass(frozen=True)
class Req:
    request_id: int

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "payload": f"{self.request_id:064x}"}


def naive_root(ids: set[int]) -> bytes:
    """The tree's definition, recursively (an independent computation)."""

    def node(level: int, index: int) -> bytes:
        if level == 0:
            return leaf_hash(Req(index).to_json()) if index in ids else EMPTY[0]
        lo = index << level
        if not any(lo <= i < lo + (1 << level) for i in ids):
            return EMPTY[level]
        left, right = node(level - 1, 2 * index), node(level - 1, 2 * index + 1)
        return hashlib.sha256(b"\x01" + left + right).digest()

    return node(DEPTH, 0)


def test_the_empty_tree_and_its_vectors() -> None:
    assert EMPTY[0] == hashlib.sha256(b"\x00").digest()
    assert EMPTY[1] == hashlib.sha256(b"\x01" + EMPTY[0] + EMPTY[0]).digest()
    assert RequestTree().root == EMPTY[DEPTH]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 2**53 - 1) | st.integers(0, 64), max_size=12), max_size=4))
def test_the_root_depends_only_on_the_pending_set(history: list[set[int]]) -> None:
    tree = RequestTree()
    for ids in history:  # requests come and go between hashings
        tree.sync({i: Req(i) for i in ids})
        fresh = RequestTree()
        fresh.sync({i: Req(i) for i in sorted(ids, reverse=True)})
        assert tree.root == fresh.root == naive_root(ids)


def test_a_request_changes_the_root_and_the_state_hash() -> None:
    tree = RequestTree()
    tree.sync({1: Req(1)})
    one = tree.root
    tree.sync({1: Req(1), 2: Req(2)})
    assert tree.root != one
    tree.sync({1: Req(1)})
    assert tree.root == one
    a = state_hash({}, {"format": 3}, one)
    assert a != state_hash({}, {"format": 3}, EMPTY[DEPTH]) and len(a) == 32
