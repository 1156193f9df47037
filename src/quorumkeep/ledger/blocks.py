"""Blocks: the ordered, hash-chained log every state of the ledger is derived from.

    block_hash = SHA-256(b"quorumkeep-block-v1\\x00" || canonical_json(body))

and ``state_hash`` the hash of the state after the block (``state_hash.py``).

``body`` is the block without its hash: height, the previous block's hash, the timestamp,
the events ``Contract.on_block`` emitted, every included transaction with its signature, hash
and outcome, and the state hash after the block. Changing any byte of any block therefore
changes its hash and breaks the link from the next block (docs/ledger.md, "Blocks").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from quorumkeep.ledger.canonical import canonical_json, parse_json
from quorumkeep.ledger.transaction import SignedTransaction, decode_hex

BLOCK_DOMAIN = b"quorumkeep-block-v1\x00"
LEDGER_FORMAT = "quorumkeep-ledger-v1"
ZERO_HASH = bytes(32)


@dataclass(frozen=True)
class Outcome:
    """What a transaction did: success (value, events) or failure (contract error)."""

    status: str
    value: Any = None
    events: tuple[dict[str, Any], ...] = ()
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def success(cls, value: Any, events: list[dict[str, Any]]) -> Outcome:
        return cls("success", value, tuple(events))

    @classmethod
    def failure(cls, code: str, message: str) -> Outcome:
        return cls("failure", error_code=code, error_message=message)

    def to_json(self) -> dict[str, Any]:
        if self.status == "success":
            return {"status": "success", "value": self.value, "events": list(self.events)}
        return {
            "status": "failure",
            "error": {"code": self.error_code, "message": self.error_message},
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Outcome:
        if value["status"] == "success":
            return cls.success(value["value"], list(value["events"]))
        if value["status"] == "failure":
            return cls.failure(str(value["error"]["code"]), str(value["error"]["message"]))
        raise ValueError(f"unknown outcome status {value['status']!r}")


@dataclass(frozen=True)
class IncludedTransaction:
    signed: SignedTransaction
    outcome: Outcome

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.signed.hash.hex(),
            "transaction": self.signed.transaction.to_json(),
            "signature": self.signed.signature.hex(),
            "outcome": self.outcome.to_json(),
        }


@dataclass(frozen=True)
class Block:
    height: int
    prev_hash: bytes
    timestamp_ms: int
    state_hash: bytes
    events: tuple[dict[str, Any], ...] = ()
    transactions: tuple[IncludedTransaction, ...] = ()
    genesis: dict[str, Any] | None = None
    _body: bytes = field(default=b"", compare=False, repr=False)

    def body_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "events": list(self.events),
            "transactions": [t.to_json() for t in self.transactions],
            "state_hash": self.state_hash.hex(),
        }
        if self.genesis is not None:
            body["genesis"] = self.genesis
        return body

    @property
    def body(self) -> bytes:
        """The canonical bytes the block hash covers (what storage keeps)."""
        if not self._body:
            object.__setattr__(self, "_body", canonical_json(self.body_json()))
        return self._body

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(BLOCK_DOMAIN + self.body).digest()

    def to_json(self) -> dict[str, Any]:
        return {**self.body_json(), "hash": self.hash.hex()}

    @classmethod
    def from_body(cls, body: bytes) -> Block:
        """Parse stored block bytes; raises ValueError/KeyError/LedgerError when malformed."""
        obj = parse_json(body)
        txs = tuple(
            IncludedTransaction(
                SignedTransaction.from_json(
                    {"transaction": t["transaction"], "signature": t["signature"]}
                ),
                Outcome.from_json(t["outcome"]),
            )
            for t in obj["transactions"]
        )
        block = cls(
            height=int(obj["height"]),
            prev_hash=decode_hex(obj["prev_hash"], 32, "prev_hash"),
            timestamp_ms=int(obj["timestamp_ms"]),
            state_hash=decode_hex(obj["state_hash"], 32, "state_hash"),
            events=tuple(obj["events"]),
            transactions=txs,
            genesis=obj.get("genesis"),
        )
        for tx, raw in zip(txs, obj["transactions"], strict=True):
            if tx.signed.hash.hex() != raw["hash"]:
                raise ValueError(f"transaction hash {raw['hash']} does not match its content")
        if block.body != body:
            raise ValueError("block bytes are not in canonical form")
        return block


def block_events(block: Block) -> list[dict[str, Any]]:
    """Every event of a block in order, as served by /v1/events (height, index, tx_hash)."""
    events: list[dict[str, Any]] = []
    for event in block.events:
        events.append({**event, "height": block.height, "index": len(events), "tx_hash": None})
    for tx in block.transactions:
        tx_hash = tx.signed.hash.hex()
        for event in tx.outcome.events:
            events.append(
                {**event, "height": block.height, "index": len(events), "tx_hash": tx_hash}
            )
    return events


def block_event_kinds(block: Block) -> set[str]:
    """The kinds of event a block has (what the per-kind event index records)."""
    kinds = {str(e["kind"]) for e in block.events}
    for tx in block.transactions:
        kinds.update(str(e["kind"]) for e in tx.outcome.events)
    return kinds
