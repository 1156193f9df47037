"""Start-up from the newest snapshot that verifies, and the snapshot policy.

A snapshot is the ledger state at one block, canonical JSON (``LedgerState.snapshot_json``),
stored beside the blocks with the hash of the block it was taken at. It is used only if it
is of the stored block at its height and its state hashes to that block's ``state_hash``;
then only the blocks after it are verified and replayed, so start-up costs what the tail
costs, not the whole history. A snapshot that does not verify is skipped (logged) for the
next older one; without one the whole chain is replayed, which is impossible once blocks
were pruned (docs/ledger.md, "Snapshots").

The newest snapshot's height is also recorded apart from the snapshots: a head below it
means the newest blocks were deleted, and the ledger refuses to start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from quorumkeep.ledger.blocks import Block
from quorumkeep.ledger.canonical import canonical_json, parse_json
from quorumkeep.ledger.chain import LedgerState
from quorumkeep.ledger.errors import LedgerCorrupted, LedgerError
from quorumkeep.ledger.storage import BlockStore

log = logging.getLogger(__name__)

DEFAULT_SNAPSHOT_EVERY_BLOCKS = 1000
SNAPSHOT_EVERY_TRANSACTIONS = 10_000
"""A snapshot is also taken after this many transactions, so that a busy ledger's tail
(what a start after a crash replays) stays short in work, not only in blocks."""


@dataclass(frozen=True)
class Restored:
    state: LedgerState
    snapshot_height: int  # -1: no snapshot was used (the whole chain was replayed)


def _genesis_state(store: BlockStore) -> LedgerState:
    stored = store.block(0)
    if stored is None:
        raise LedgerCorrupted(0, "no genesis block")
    return LedgerState.replay([(0, *stored)])


def _from_snapshot(store: BlockStore, height: int, block_hash: bytes, body: bytes) -> LedgerState:
    """The state of one stored snapshot; ValueError (and friends) if it does not verify."""
    stored = store.block(height)
    if stored is None:
        raise ValueError(f"block {height} is not stored")
    stored_hash, block_body = stored
    block = Block.from_body(block_body)
    if block.hash != stored_hash or stored_hash != block_hash or block.height != height:
        raise ValueError(f"block {height} does not match the snapshot's block hash")
    state = _genesis_state(store)
    state.restore_snapshot(parse_json(body), block)
    return state


def restore(
    store: BlockStore,
    on_block: Callable[[Block], None] | None = None,
    before_tail: Callable[[int], None] | None = None,
) -> Restored:
    """Rebuild the state of ``store``'s chain: newest verifying snapshot, then the tail.

    ``before_tail`` is told the height of the snapshot used (-1: none) before the replay;
    ``on_block`` then sees every block replayed (all of them without a snapshot). Raises
    LedgerCorrupted when the chain cannot be trusted.
    """
    head = store.head_height()
    if head is None:
        raise LedgerCorrupted(0, "no genesis block")
    recorded = int(store.meta("snapshot_height") or -1)
    if recorded > head:
        raise LedgerCorrupted(
            head + 1,
            f"blocks {head + 1} to {recorded} are missing (a snapshot was taken at block "
            f"{recorded}): the newest blocks were deleted",
        )
    for height, block_hash, body in store.snapshots():
        try:
            state = _from_snapshot(store, height, block_hash, body)
        except (ValueError, KeyError, TypeError, LedgerError, LedgerCorrupted) as exc:
            log.warning(
                "snapshot at block %d does not verify (%s); trying an older one", height, exc
            )
            continue
        if before_tail is not None:
            before_tail(height)
        state = LedgerState.replay(store.iter_blocks(above=height), on_block, start=state)
        return Restored(state, height)
    anchor = store.anchor()
    if anchor is not None:
        raise LedgerCorrupted(anchor[0], "blocks up to here were pruned and no snapshot verifies")
    if before_tail is not None:
        before_tail(-1)
    return Restored(LedgerState.replay(store.iter_blocks(), on_block), -1)


def encode(state: LedgerState) -> tuple[int, bytes, bytes]:
    """(height, block hash, body) of a snapshot of ``state`` as it is now; the state must
    equal its last block (call it between blocks, on the producer's thread)."""
    return state.height, state.head_hash, canonical_json(state.snapshot_json())


def take(store: BlockStore, state: LedgerState) -> None:
    store.write_snapshot(*encode(state))


class SnapshotPolicy:
    """When to take the next snapshot: every ``every_blocks`` blocks or
    ``SNAPSHOT_EVERY_TRANSACTIONS`` transactions since the last one, whichever comes first."""

    def __init__(self, last_height: int, every_blocks: int = DEFAULT_SNAPSHOT_EVERY_BLOCKS) -> None:
        self.last_height = last_height
        self.every_blocks = every_blocks
        self._transactions = 0

    def due(self, block: Block) -> bool:
        self._transactions += len(block.transactions)
        return (
            block.height - self.last_height >= self.every_blocks
            or self._transactions >= SNAPSHOT_EVERY_TRANSACTIONS
        )

    def taken(self, height: int) -> None:
        self.last_height = height
        self._transactions = 0


@dataclass(frozen=True)
class Pruned:
    snapshot_height: int
    first_kept: int  # the oldest block kept after genesis
    deleted: int


def prune(store: BlockStore, keep_blocks: int) -> Pruned:
    """Delete the blocks more than ``keep_blocks`` before the newest verifying snapshot
    (genesis stays). The kept chain is checked link by link from the first kept block to
    the head first, and the hash of the last deleted block is recorded as the anchor the
    first kept block names. Raises LedgerCorrupted, or ValueError without a snapshot."""
    if keep_blocks < 0:
        raise ValueError("--keep-blocks must be >= 0")
    restored = restore(store)
    if restored.snapshot_height < 0:
        raise ValueError("there is no snapshot to prune behind yet (a clean stop takes one)")
    first_kept = max(1, restored.snapshot_height - keep_blocks)
    oldest = store.oldest_height_above_genesis()
    if oldest is None or first_kept <= oldest:
        return Pruned(restored.snapshot_height, oldest or first_kept, 0)
    anchor = _check_links(store, first_kept)
    deleted = store.prune_below(first_kept, anchor)
    return Pruned(restored.snapshot_height, first_kept, deleted)


def _check_links(store: BlockStore, first: int) -> bytes:
    """Verify every stored block from ``first`` up: hash and link. Returns the hash block
    ``first`` names as its previous block (the anchor once the blocks before it go)."""
    anchor = b""
    previous: bytes | None = None
    for height, stored_hash, body in store.iter_blocks(above=first - 1):
        block = Block.from_body(body)
        if block.hash != stored_hash or block.height != height:
            raise LedgerCorrupted(height, "block hash does not match its content")
        if previous is None:
            anchor = block.prev_hash
        elif block.prev_hash != previous:
            raise LedgerCorrupted(height, f"previous-block hash does not match block {height - 1}")
        previous = stored_hash
    return anchor


def verify(store: BlockStore) -> tuple[int, int]:
    """Check the whole stored chain, not only what start-up checks: without pruning, a
    full replay from genesis (every signature, outcome and state hash); after pruning,
    every hash and link from the first kept block (which must name the anchor) to the
    head, then the newest verifying snapshot and the tail. Returns (first block checked
    after genesis, head). Raises LedgerCorrupted."""
    anchor = store.anchor()
    if anchor is None:
        state = LedgerState.replay(store.iter_blocks())
        return min(1, state.height), state.height
    first = anchor[0] + 1
    if _check_links(store, first) != anchor[1]:
        raise LedgerCorrupted(first, "previous-block hash does not match the recorded anchor")
    return first, restore(store).state.height
