"""quorumkeep.contract: the MPC contract, a pure deterministic state machine.

The ledger hosts one ``Contract``: it feeds it authenticated calls (``call``), block ticks
(``on_block``) and queries (``view``), and persists ``to_json()``. docs/contract.md
describes every method, rule, error code, event and encoding.
"""

from quorumkeep.contract.context import CallContext, CallResult, MethodSpec
from quorumkeep.contract.contract import METHODS, NODE_METHODS, VIEW_METHODS, Contract
from quorumkeep.contract.errors import (
    ERRORS,
    AlreadyInitialized,
    AlreadyParticipant,
    ContractError,
    DomainNotFound,
    DuplicateVote,
    InvalidArguments,
    InvalidKeyEvent,
    InvalidKeyPackage,
    InvalidProposal,
    InvalidSignature,
    InvalidState,
    InvalidThreshold,
    KeyInUse,
    KeysetMismatch,
    MigrationNotFound,
    NotInitialized,
    NotOperator,
    NotParticipant,
    PayloadSize,
    ProtocolStateNotRunning,
    RequestNotFound,
    SignerKeyMismatch,
    TooManyRequests,
    UnknownMethod,
    error_from_code,
)
from quorumkeep.contract.events import EVENT_KINDS, Event

__all__ = [
    "ERRORS",
    "EVENT_KINDS",
    "METHODS",
    "NODE_METHODS",
    "VIEW_METHODS",
    "AlreadyInitialized",
    "AlreadyParticipant",
    "CallContext",
    "CallResult",
    "Contract",
    "ContractError",
    "DomainNotFound",
    "DuplicateVote",
    "Event",
    "InvalidArguments",
    "InvalidKeyEvent",
    "InvalidKeyPackage",
    "InvalidProposal",
    "InvalidSignature",
    "InvalidState",
    "InvalidThreshold",
    "KeyInUse",
    "KeysetMismatch",
    "MethodSpec",
    "MigrationNotFound",
    "NotInitialized",
    "NotOperator",
    "NotParticipant",
    "PayloadSize",
    "ProtocolStateNotRunning",
    "RequestNotFound",
    "SignerKeyMismatch",
    "TooManyRequests",
    "UnknownMethod",
    "error_from_code",
]
