"""The ledger state machine in-process: block building, batching and replay verification."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from ledger_helpers import backup_service_args, init_args, new_signer

from quorumkeep.ledger.blocks import BLOCK_DOMAIN, Block
from quorumkeep.ledger.canonical import canonical_json, parse_json
from quorumkeep.ledger.chain import LedgerState, make_genesis
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.errors import LedgerCorrupted
from quorumkeep.ledger.transaction import FunctionCall, SignedTransaction, Transaction

ACCOUNTS = ("alice", "bob", "carol")


class Chain:
    """A ledger kept as stored rows (height, hash, body), like the SQLite table."""

    def __init__(self) -> None:
        self.signers = {a: new_signer(a) for a in ACCOUNTS}
        genesis = make_genesis(
            {a: [s.public_key] for a, s in self.signers.items()},
            timestamp_ms=1_000,
            tx_validity_blocks=5,
        )
        self.rows: list[tuple[int, bytes, bytes]] = [(0, genesis.hash, genesis.body)]
        self.state = LedgerState.replay(self.rows)
        self.nonces = dict.fromkeys(ACCOUNTS, 0)

    def tx(self, account: str, method: str, args: dict[str, Any], **kw: Any) -> SignedTransaction:
        signer: AccountSigner = self.signers[account]
        self.nonces[account] += 1
        fields: dict[str, Any] = {
            "chain_id": self.state.chain_id,
            "signer_account": account,
            "public_key": signer.public_key,
            "nonce": self.nonces[account],
            "block_height": self.state.height,
            "actions": (FunctionCall(method, args),),
        }
        fields.update(kw)
        return signer.sign(Transaction(**fields))

    def block(self, txs: list[SignedTransaction]) -> Any:
        block, applied = self.state.build_block(txs, 1_000 + 10 * len(self.rows))
        self.rows.append((block.height, block.hash, block.body))
        return block, applied


@pytest.fixture
def chain() -> Chain:
    chain = Chain()
    chain.block([chain.tx("alice", "init", init_args(list(ACCOUNTS)))])
    return chain


def test_replay_reproduces_the_state(chain: Chain) -> None:
    chain.block([chain.tx("bob", "register_backup_service", backup_service_args())])
    chain.block([])
    replayed = LedgerState.replay(chain.rows)
    assert replayed.state_hash() == chain.state.state_hash()
    assert replayed.head_hash == chain.state.head_hash
    assert replayed.height == chain.state.height == 3


def test_a_batch_keeps_one_keys_transactions_in_nonce_order(chain: Chain) -> None:
    first = chain.tx("bob", "register_backup_service", backup_service_args())
    second = chain.tx("bob", "register_backup_service", backup_service_args())
    other = chain.tx("carol", "register_backup_service", backup_service_args())
    block, applied = chain.block([second, other, first])  # arrived out of order
    assert all(a.error is None for a in applied)
    assert [t.signed.transaction.nonce for t in block.transactions][::2] == [1, 2]


def test_a_transaction_refused_at_block_time_is_left_out(chain: Chain) -> None:
    signed = chain.tx("bob", "register_backup_service", backup_service_args())
    block, applied = chain.block([signed, signed])  # the same transaction twice
    assert len(block.transactions) == 1
    assert applied[1].error is not None and applied[1].error.code == "DuplicateTransaction"


def test_expiry_is_checked_against_the_block_being_built(chain: Chain) -> None:
    signed = chain.tx("bob", "register_backup_service", backup_service_args())
    for _ in range(5):
        chain.block([])
    block, applied = chain.block([signed])
    assert not block.transactions
    assert applied[0].error is not None and applied[0].error.code == "TransactionExpired"


def _edit(chain: Chain, height: int, edit: Any, rehash: bool = True) -> None:
    h, stored_hash, body = chain.rows[height]
    obj = parse_json(body)
    edit(obj)
    new_body = canonical_json(obj)
    new_hash = hashlib.sha256(BLOCK_DOMAIN + new_body).digest() if rehash else stored_hash
    chain.rows[height] = (h, new_hash, new_body)


def _corrupt_at(chain: Chain) -> LedgerCorrupted:
    with pytest.raises(LedgerCorrupted) as info:
        LedgerState.replay(chain.rows)
    return info.value


def test_replay_detects_an_edited_block(chain: Chain) -> None:
    _edit(chain, 1, lambda b: b.update(timestamp_ms=b["timestamp_ms"] + 1), rehash=False)
    error = _corrupt_at(chain)
    assert error.height == 1 and "hash" in error.reason


def test_replay_detects_a_broken_link(chain: Chain) -> None:
    chain.block([])
    _edit(chain, 1, lambda b: b.update(timestamp_ms=b["timestamp_ms"] + 1))
    error = _corrupt_at(chain)
    assert error.height == 2 and "previous-block hash" in error.reason


def test_replay_detects_a_forged_signature(chain: Chain) -> None:
    def forge(block: dict[str, Any]) -> None:
        sig = block["transactions"][0]["signature"]
        block["transactions"][0]["signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]

    _edit(chain, 1, forge)
    error = _corrupt_at(chain)
    assert error.height == 1 and "InvalidSignature" in error.reason


def test_replay_detects_an_edited_state_hash(chain: Chain) -> None:
    _edit(chain, 1, lambda b: b.update(state_hash="00" * 32))
    error = _corrupt_at(chain)
    assert error.height == 1 and "state hash" in error.reason


def test_replay_detects_a_missing_block(chain: Chain) -> None:
    chain.block([])
    del chain.rows[1]
    error = _corrupt_at(chain)
    assert error.height == 1 and "missing" in error.reason


def test_replay_detects_a_non_canonical_block(chain: Chain) -> None:
    h, _, body = chain.rows[1]
    spaced = body.replace(b'":', b'": ', 1)
    chain.rows[1] = (h, hashlib.sha256(BLOCK_DOMAIN + spaced).digest(), spaced)
    error = _corrupt_at(chain)
    assert error.height == 1 and "canonical" in error.reason


def test_block_json_round_trips(chain: Chain) -> None:
    block, _ = chain.block([chain.tx("carol", "register_backup_service", backup_service_args())])
    again = Block.from_body(block.body)
    assert again.hash == block.hash
    assert again.to_json() == block.to_json()


def test_an_idle_block_keeps_its_parents_state_hash(chain: Chain) -> None:
    before = chain.state.state_hash()
    idle, _ = chain.block([])
    assert idle.state_hash == before == chain.state.state_hash()
    busy, _ = chain.block([chain.tx("bob", "register_backup_service", backup_service_args())])
    assert busy.state_hash != before and busy.state_hash == chain.state.state_hash()


def test_replay_detects_an_edited_state_hash_in_an_idle_block(chain: Chain) -> None:
    chain.block([])
    _edit(chain, 2, lambda b: b.update(state_hash="11" * 32))
    error = _corrupt_at(chain)
    assert error.height == 2 and "state hash" in error.reason
