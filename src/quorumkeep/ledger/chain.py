"""The ledger's state machine: accounts + contract, advanced one block at a time.

Everything here is synchronous and deterministic given the blocks: the block producer
(``node.py``) calls :meth:`LedgerState.build_block` with the transactions that arrived and a
timestamp, and start-up calls :meth:`LedgerState.replay` with the stored blocks, which must
reproduce every outcome, event and state hash exactly or the ledger refuses to start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quorumkeep.contract import CallContext, Contract, ContractError
from quorumkeep.ledger.accounts import Accounts
from quorumkeep.ledger.blocks import (
    LEDGER_FORMAT,
    ZERO_HASH,
    Block,
    IncludedTransaction,
    Outcome,
)
from quorumkeep.ledger.canonical import canonical_json
from quorumkeep.ledger.errors import LedgerCorrupted, LedgerError
from quorumkeep.ledger.state_hash import RequestTree, state_hash
from quorumkeep.ledger.transaction import FunctionCall, SignedTransaction, decode_public_key

log = logging.getLogger(__name__)

DEFAULT_TX_VALIDITY_BLOCKS = 1000
MAX_TX_VALIDITY_BLOCKS = 1_000_000
DEFAULT_TX_VALIDITY_MS = 3_600_000
MIN_TX_VALIDITY_MS = 2_000
MAX_TX_VALIDITY_MS = 30 * 86_400_000
# The replay set is pruned every this many blocks (a scan of the hashes still in the window).
_PRUNE_EVERY = 64
SNAPSHOT_FORMAT = "quorumkeep-snapshot-v1"


def make_genesis(
    accounts: Mapping[str, Iterable[bytes]],
    *,
    timestamp_ms: int,
    tx_validity_blocks: int = DEFAULT_TX_VALIDITY_BLOCKS,
    tx_validity_ms: int | None = DEFAULT_TX_VALIDITY_MS,
) -> Block:
    """Block 0: the accounts with their full-access keys and the ledger's parameters.

    ``tx_validity_ms=None`` leaves the time limit out (transactions then expire by block
    count only, as in ledgers made before the limit existed).
    """
    if not accounts:
        raise LedgerError("InvalidRequest", "genesis needs at least one account")
    if not 1 <= tx_validity_blocks <= MAX_TX_VALIDITY_BLOCKS:
        raise LedgerError("InvalidRequest", "tx_validity_blocks out of range")
    if (
        tx_validity_ms is not None
        and not MIN_TX_VALIDITY_MS <= tx_validity_ms <= MAX_TX_VALIDITY_MS
    ):
        raise LedgerError("InvalidRequest", "tx_validity_ms out of range")
    genesis: dict[str, Any] = {
        "format": LEDGER_FORMAT,
        "tx_validity_blocks": tx_validity_blocks,
        "accounts": {
            name: {"full_access_keys": sorted(pk.hex() for pk in keys)}
            for name, keys in sorted(accounts.items())
        },
    }
    if tx_validity_ms is not None:
        genesis["tx_validity_ms"] = tx_validity_ms
    state = LedgerState._from_genesis(genesis, chain_id=ZERO_HASH)
    return Block(
        height=0,
        prev_hash=ZERO_HASH,
        timestamp_ms=timestamp_ms,
        state_hash=state.state_hash(),
        genesis=genesis,
    )


@dataclass(frozen=True)
class Applied:
    """One submitted transaction's fate in a block: included with an outcome, or refused."""

    signed: SignedTransaction
    outcome: Outcome | None
    error: LedgerError | None


class LedgerState:
    """Accounts, contract and chain head; the block producer is its only writer."""

    def __init__(
        self,
        *,
        chain_id: bytes,
        accounts: Accounts,
        contract: Contract,
        tx_validity_blocks: int,
        tx_validity_ms: int | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.accounts = accounts
        self.contract = contract
        self.tx_validity_blocks = tx_validity_blocks
        self.tx_validity_ms = tx_validity_ms
        self.height = -1
        self.head_hash = ZERO_HASH
        self.timestamp_ms = 0
        self._head_state_hash: bytes | None = None
        # tx hash -> its block_height, for every included transaction not yet expired.
        self._recent: dict[bytes, int] = {}
        # height -> block timestamp, for every block a new transaction may still name.
        self._timestamps: dict[int, int] = {}
        self._requests_tree = RequestTree()

    @classmethod
    def _from_genesis(cls, genesis: dict[str, Any], *, chain_id: bytes) -> LedgerState:
        if genesis.get("format") != LEDGER_FORMAT:
            raise ValueError(f"genesis format is not {LEDGER_FORMAT}")
        accounts = Accounts.genesis(
            {
                name: [decode_public_key(pk) for pk in body["full_access_keys"]]
                for name, body in genesis["accounts"].items()
            }
        )
        return cls(
            chain_id=chain_id,
            accounts=accounts,
            contract=Contract(),
            tx_validity_blocks=int(genesis["tx_validity_blocks"]),
            tx_validity_ms=None
            if "tx_validity_ms" not in genesis
            else int(genesis["tx_validity_ms"]),
        )

    # --- state hash -------------------------------------------------------------------

    def state_json(self) -> dict[str, Any]:
        return {"accounts": self.accounts.to_json(), "contract": self.contract.to_json()}

    def state_hash(self) -> bytes:
        """docs/ledger.md §3.1: the pending requests enter through their Merkle root,
        updated for the requests that came or went only."""
        self._requests_tree.sync(self.contract.pending_requests())
        return state_hash(
            self.accounts.to_json(),
            self.contract.to_json_without_requests(),
            self._requests_tree.root,
        )

    def _state_hash_after(self, events: Sequence[object], transactions: Sequence[object]) -> bytes:
        """The state hash of a block with these ``on_block`` events and transactions.

        The state changes only through ``on_block`` events or included transactions, so a
        block with neither keeps its parent's hash: heartbeat blocks and their replay at
        start-up skip hashing the state.
        """
        if not events and not transactions and self._head_state_hash is not None:
            return self._head_state_hash
        return self.state_hash()

    # --- validation -------------------------------------------------------------------

    def check(
        self, signed: SignedTransaction, height: int | None = None, timestamp_ms: int = 0
    ) -> None:
        """Raise LedgerError unless ``signed`` may go into block ``height`` (default: next)
        made at ``timestamp_ms`` (at submission: the current time).

        The signature is checked by the caller (once, at submission or replay). Nothing here
        changes state.
        """
        if height is None:
            height = self.height + 1
        tx = signed.transaction
        if tx.chain_id != self.chain_id:
            raise LedgerError("WrongChain", "transaction is for another ledger (chain_id)")
        key = self.accounts.key(tx.signer_account, tx.public_key)
        if tx.block_height >= height:
            raise LedgerError(
                "InvalidBlockHeight",
                f"block_height {tx.block_height} is not below the next block {height}",
            )
        if tx.block_height < height - self.tx_validity_blocks:
            raise LedgerError(
                "TransactionExpired",
                f"block_height {tx.block_height} is more than {self.tx_validity_blocks} "
                f"blocks before the next block {height}",
            )
        if self.tx_validity_ms is not None:
            named = self._timestamps.get(tx.block_height, 0)
            if named < max(timestamp_ms, self.timestamp_ms) - self.tx_validity_ms:
                raise LedgerError(
                    "TransactionExpired",
                    f"block {tx.block_height} was made more than {self.tx_validity_ms} ms "
                    "before this one",
                )
        if signed.hash in self._recent:
            raise LedgerError(
                "DuplicateTransaction", f"transaction {signed.hash.hex()} was already included"
            )
        if tx.nonce <= key.nonce:
            raise LedgerError(
                "InvalidNonce",
                f"nonce {tx.nonce} is not above the key's current nonce {key.nonce}",
            )
        self.accounts.authorize(tx.signer_account, key, tx.actions)

    # --- blocks ---------------------------------------------------------------------

    def build_block(
        self, batch: list[SignedTransaction], timestamp_ms: int
    ) -> tuple[Block, list[Applied]]:
        """Apply ``batch`` as the next block; refused transactions are left out of it.

        Mutates the state: the caller must make the block durable before it shows anyone
        a result, and must stop (and rebuild from storage) if that fails.
        """
        height = self.height + 1
        timestamp_ms = max(timestamp_ms, self.timestamp_ms)
        block_events = [e.to_json() for e in self.contract.on_block(height, timestamp_ms)]
        applied: list[Applied] = []
        included: list[IncludedTransaction] = []
        for signed in _order_nonces(batch):
            try:
                self.check(signed, height, timestamp_ms)
            except LedgerError as exc:
                applied.append(Applied(signed, None, exc))
                continue
            outcome = self._execute(signed, height, timestamp_ms)
            applied.append(Applied(signed, outcome, None))
            included.append(IncludedTransaction(signed, outcome))
        block = self._seal(height, timestamp_ms, block_events, included)
        return block, applied

    def _execute(self, signed: SignedTransaction, height: int, timestamp_ms: int) -> Outcome:
        tx = signed.transaction
        key = self.accounts.key(tx.signer_account, tx.public_key)
        key.nonce = tx.nonce
        self._recent[signed.hash] = tx.block_height
        call = tx.function_call
        outcome = Outcome.success(None, [])
        if call is not None:
            outcome = self._call(signed, call, key.permission.full_access, height, timestamp_ms)
        if outcome.status == "success":
            self.accounts.apply_key_actions(tx.signer_account, tx.actions)
        return outcome

    def _call(
        self,
        signed: SignedTransaction,
        call: FunctionCall,
        full_access: bool,
        height: int,
        timestamp_ms: int,
    ) -> Outcome:
        tx = signed.transaction
        ctx = CallContext(
            predecessor=tx.signer_account,
            signer_public_key=tx.public_key,
            full_access=full_access,
            block_height=height,
            timestamp_ms=timestamp_ms,
        )
        try:
            result = self.contract.call(ctx, call.method, call.args)
        except ContractError as exc:
            return Outcome.failure(exc.code, _one_line(str(exc)))
        except Exception as exc:  # a contract bug: record it, deterministically, and go on
            log.exception("contract raised %s in %s", type(exc).__name__, call.method)
            return Outcome.failure("ContractPanic", f"contract raised {type(exc).__name__}")
        return Outcome.success(result.value, [e.to_json() for e in result.events])

    def _seal(
        self,
        height: int,
        timestamp_ms: int,
        events: list[dict[str, Any]],
        included: list[IncludedTransaction],
    ) -> Block:
        block = Block(
            height=height,
            prev_hash=self.head_hash,
            timestamp_ms=timestamp_ms,
            state_hash=self._state_hash_after(events, included),
            events=tuple(events),
            transactions=tuple(included),
        )
        self._advance(block)
        return block

    def _advance(self, block: Block) -> None:
        self.height = block.height
        self.head_hash = block.hash
        self.timestamp_ms = block.timestamp_ms
        self._head_state_hash = block.state_hash
        self._timestamps[block.height] = block.timestamp_ms
        if block.height % _PRUNE_EVERY == 0:
            oldest = block.height + 1 - self.tx_validity_blocks
            self._recent = {h: bh for h, bh in self._recent.items() if bh >= oldest}
            self._timestamps = {h: t for h, t in self._timestamps.items() if h >= oldest}

    def named_height(self, tx_hash: bytes) -> int | None:
        """The ``block_height`` of an included transaction still in the replay window."""
        return self._recent.get(tx_hash)

    # --- snapshots -------------------------------------------------------------------

    def snapshot_json(self) -> dict[str, Any]:
        """Everything needed to go on from the head without replaying the blocks before it
        (docs/ledger.md, "Snapshots"): the state its block's ``state_hash`` covers, and the
        replay window (included transaction hashes, block times) new transactions are
        checked against."""
        assert self._head_state_hash is not None
        return {
            "format": SNAPSHOT_FORMAT,
            "height": self.height,
            "block_hash": self.head_hash.hex(),
            "state_hash": self._head_state_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "state": self.state_json(),
            "recent": sorted([h.hex(), bh] for h, bh in self._recent.items()),
            "timestamps": sorted([h, t] for h, t in self._timestamps.items()),
        }

    def restore_snapshot(self, snapshot: Mapping[str, Any], block: Block) -> None:
        """Take the state of ``snapshot``, which must be of ``block`` (the stored block at
        its height): its state must hash to the block's ``state_hash``. ``self`` is the
        state right after genesis (chain id and parameters). Raises ValueError, KeyError or
        TypeError on any mismatch."""
        if snapshot["format"] != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format is not {SNAPSHOT_FORMAT}")
        if snapshot["height"] != block.height or snapshot["block_hash"] != block.hash.hex():
            raise ValueError("snapshot is not of the stored block at its height")
        state = snapshot["state"]
        if set(state) != {"accounts", "contract"}:
            raise ValueError("snapshot state has unexpected members")
        accounts = Accounts.from_json(state["accounts"])
        contract = Contract.from_json(state["contract"])
        tree = RequestTree()
        tree.sync(contract.pending_requests())
        computed = state_hash(accounts.to_json(), contract.to_json_without_requests(), tree.root)
        if computed != block.state_hash:
            raise ValueError("snapshot state does not hash to its block's state_hash")
        self.accounts = accounts
        self.contract = contract
        self._requests_tree = tree
        self.height = block.height
        self.head_hash = block.hash
        self.timestamp_ms = block.timestamp_ms
        self._head_state_hash = block.state_hash
        self._recent = {bytes.fromhex(h): int(bh) for h, bh in snapshot["recent"]}
        self._timestamps = {int(h): int(t) for h, t in snapshot["timestamps"]}
        self._timestamps[block.height] = block.timestamp_ms

    # --- start-up -------------------------------------------------------------------

    @classmethod
    def replay(
        cls,
        blocks: Iterable[tuple[int, bytes, bytes]],
        on_block: Callable[[Block], None] | None = None,
        start: LedgerState | None = None,
    ) -> LedgerState:
        """Verify the stored chain block by block and rebuild the state it leads to, from
        genesis or from ``start`` (a state restored from a snapshot: ``blocks`` then begin
        right after it).

        Raises LedgerCorrupted naming the first block that fails: wrong hash, broken link,
        bad signature, a transaction that is no longer valid, or an outcome, event or state
        hash the replay does not reproduce.
        """
        state: LedgerState | None = start
        first = 0 if start is None else start.height + 1
        for expected_height, (height, stored_hash, body) in enumerate(blocks, first):
            if height != expected_height:
                raise LedgerCorrupted(expected_height, "block is missing")
            try:
                block = Block.from_body(body)
            except (ValueError, KeyError, TypeError, LedgerError) as exc:
                raise LedgerCorrupted(height, f"unreadable block ({_one_line(str(exc))})") from None
            if block.hash != stored_hash:
                raise LedgerCorrupted(height, "block hash does not match its content")
            if block.height != height:
                raise LedgerCorrupted(height, f"block claims height {block.height}")
            if height == 0 and start is None:
                state = cls._replay_genesis(block)
            else:
                assert state is not None
                state._replay_block(block)
            if on_block is not None:
                on_block(block)
        if state is None:
            raise LedgerCorrupted(0, "no genesis block")
        return state

    @classmethod
    def _replay_genesis(cls, block: Block) -> LedgerState:
        if block.prev_hash != ZERO_HASH or block.genesis is None or block.transactions:
            raise LedgerCorrupted(0, "not a genesis block")
        try:
            state = cls._from_genesis(block.genesis, chain_id=block.hash)
        except (ValueError, KeyError, TypeError, LedgerError) as exc:
            raise LedgerCorrupted(0, f"invalid genesis ({_one_line(str(exc))})") from None
        if state.state_hash() != block.state_hash:
            raise LedgerCorrupted(0, "genesis state hash does not match")
        state._advance(block)
        return state

    def apply_block(self, block: Block) -> None:
        """Verify and apply the next block made elsewhere (a replica following the
        proposer): the same checks as a replay at start-up. Raises LedgerCorrupted."""
        self._replay_block(block)

    def _replay_block(self, block: Block) -> None:
        height = block.height
        if block.prev_hash != self.head_hash:
            raise LedgerCorrupted(height, f"previous-block hash does not match block {height - 1}")
        if block.genesis is not None:
            raise LedgerCorrupted(height, "a second genesis")
        if block.timestamp_ms < self.timestamp_ms:
            raise LedgerCorrupted(height, "timestamp goes backwards")
        events = [e.to_json() for e in self.contract.on_block(height, block.timestamp_ms)]
        if canonical_json(events) != canonical_json(list(block.events)):
            raise LedgerCorrupted(height, "on_block events differ from the replay")
        for index, included in enumerate(block.transactions):
            signed = included.signed
            try:
                signed.verify()
                self.check(signed, height, block.timestamp_ms)
            except LedgerError as exc:
                raise LedgerCorrupted(
                    height, f"transaction {index} is invalid ({exc.code}: {exc.message})"
                ) from None
            outcome = self._execute(signed, height, block.timestamp_ms)
            if canonical_json(outcome.to_json()) != canonical_json(included.outcome.to_json()):
                raise LedgerCorrupted(
                    height, f"transaction {index} outcome differs from the replay"
                )
        if self._state_hash_after(block.events, block.transactions) != block.state_hash:
            raise LedgerCorrupted(height, "state hash differs from the replay")
        self._advance(block)


def _order_nonces(batch: list[SignedTransaction]) -> list[SignedTransaction]:
    """Keep arrival order, but let one key's transactions go in nonce order.

    Concurrent submissions from one key (nonces n+1, n+2 sent at once) may arrive swapped;
    within a batch they are re-slotted so that neither is refused for a stale nonce.
    """
    slots: dict[tuple[str, bytes], list[int]] = {}
    for i, signed in enumerate(batch):
        tx = signed.transaction
        slots.setdefault((tx.signer_account, tx.public_key), []).append(i)
    ordered = list(batch)
    for positions in slots.values():
        if len(positions) > 1:
            txs = sorted((batch[i] for i in positions), key=lambda s: s.transaction.nonce)
            for position, signed in zip(positions, txs, strict=True):
                ordered[position] = signed
    return ordered


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
