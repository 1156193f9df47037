"""What the ledger hands the contract with a call, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quorumkeep.contract.events import Event


@dataclass(frozen=True)
class CallContext:
    """Facts about the transaction that the ledger has already authenticated.

    The contract trusts these: the ledger checked the signature, the nonce and that the
    key belongs to ``predecessor`` with the permission reported in ``full_access``.
    """

    predecessor: str
    signer_public_key: bytes
    full_access: bool
    block_height: int
    timestamp_ms: int


@dataclass(frozen=True)
class CallResult:
    """A successful call: its JSON return value and the events it emitted, in order."""

    value: Any
    events: list[Event]


@dataclass(frozen=True)
class MethodSpec:
    """How the ledger must gate a method before the contract sees the call.

    ``full_access_only`` methods are the operator's: a function-call key may never call
    them, whatever its method list says.
    """

    full_access_only: bool
