"""The contract object the ledger hosts: dispatch of calls, views and block ticks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from quorumkeep.contract import (
    attestation,
    backup_gate,
    initialize,
    key_events,
    key_providers,
    keygen,
    migration,
    recovery,
    resharing,
    signing,
)
from quorumkeep.contract.context import CallContext, CallResult, MethodSpec
from quorumkeep.contract.errors import ContractError, InvalidArguments, UnknownMethod
from quorumkeep.contract.events import Event
from quorumkeep.contract.state import ContractState, SignRequest
from quorumkeep.contract.views import VIEWS

Handler = Callable[[ContractState, CallContext, dict[str, Any]], CallResult]

_OPERATOR = MethodSpec(full_access_only=True)
_ANY_KEY = MethodSpec(full_access_only=False)

_HANDLERS: dict[str, tuple[MethodSpec, Handler]] = {
    "init": (_OPERATOR, initialize.init),
    "vote_add_domains": (_OPERATOR, keygen.vote_add_domains),
    "vote_pk": (_ANY_KEY, keygen.vote_pk),
    "vote_abort_key_event": (_ANY_KEY, key_events.vote_abort_key_event),
    "vote_cancel_keygen": (_OPERATOR, keygen.vote_cancel_keygen),
    "vote_new_parameters": (_OPERATOR, resharing.vote_new_parameters),
    "vote_reshared": (_ANY_KEY, resharing.vote_reshared),
    "vote_cancel_resharing": (_OPERATOR, resharing.vote_cancel_resharing),
    "submit_participant_info": (_ANY_KEY, resharing.submit_participant_info),
    "sign": (_ANY_KEY, signing.sign),
    "respond": (_ANY_KEY, signing.respond),
    "register_backup_service": (_OPERATOR, migration.register_backup_service),
    "start_node_migration": (_OPERATOR, migration.start_node_migration),
    "conclude_node_migration": (_ANY_KEY, migration.conclude_node_migration),
    "cancel_node_migration": (_OPERATOR, migration.cancel_node_migration),
    "submit_attestation": (_ANY_KEY, attestation.submit_attestation),
    "vote_measurement": (_OPERATOR, attestation.vote_measurement),
    "vote_tcb_policy": (_OPERATOR, attestation.vote_tcb_policy),
    "verify_attestations": (_ANY_KEY, attestation.verify_attestations),
    "vote_recovery_key": (_OPERATOR, recovery.vote_recovery_key),
    "submit_recovery_part": (_ANY_KEY, recovery.submit_recovery_part),
    "confirm_backup": (_ANY_KEY, backup_gate.confirm_backup),
    "register_key_provider": (_OPERATOR, key_providers.register_key_provider),
    "deregister_key_provider": (_OPERATOR, key_providers.deregister_key_provider),
    "record_key_providers": (_ANY_KEY, key_providers.record_key_providers),
}

METHODS: Mapping[str, MethodSpec] = MappingProxyType(
    {name: spec for name, (spec, _) in _HANDLERS.items()}
)
"""Every callable method and how the ledger must gate it."""

NODE_METHODS: frozenset[str] = frozenset(
    {
        "vote_pk",
        "vote_abort_key_event",
        "vote_reshared",
        "respond",
        "conclude_node_migration",
        "submit_participant_info",
        "submit_attestation",
        "verify_attestations",
        "submit_recovery_part",
        "record_key_providers",
    }
)
"""The methods a node's function-call key is given: its own protocol calls, nothing else."""

BACKUP_SERVICE_METHODS: frozenset[str] = frozenset({"confirm_backup", "submit_attestation"})
"""The methods a backup service's identity key is given as a function-call key: it confirms
its backups and renews its own attestation."""

FUNCTION_CALL_METHODS: frozenset[str] = NODE_METHODS | BACKUP_SERVICE_METHODS
"""Every method a function-call access key may be allowed (the ledger refuses others)."""

VIEW_METHODS: frozenset[str] = frozenset(VIEWS)


class Contract:
    """The MPC contract: a deterministic state machine over JSON-serializable state.

    Pure: the ledger supplies the caller, the block height and the time; nothing here
    reads a clock, a file or a random source. Every call either returns a CallResult or
    raises a ContractError and leaves the state exactly as it was.
    """

    def __init__(self) -> None:
        self._state = ContractState()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Contract:
        """Rebuild from ``to_json()`` output; ValueError if it is not a valid state."""
        contract = cls()
        try:
            contract._state = ContractState.from_json(data)
        except ContractError as exc:
            raise ValueError(f"invalid contract state: {exc.message}") from exc
        return contract

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON: equal states give equal output under ``sort_keys``."""
        return self._state.to_json()

    def to_json_without_requests(self) -> dict[str, Any]:
        """``to_json()`` without ``sign_requests`` (see ``pending_requests``)."""
        return self._state.to_json(requests=False)

    def pending_requests(self) -> Mapping[int, SignRequest]:
        """The pending sign requests by id (read-only view; requests are immutable)."""
        return MappingProxyType(self._state.requests)

    @property
    def protocol_state(self) -> str:
        """NotInitialized, Initializing, Running or Resharing."""
        return self._state.protocol.name

    def call(self, ctx: CallContext, method: str, args: dict[str, Any]) -> CallResult:
        entry = _HANDLERS.get(method)
        if entry is None:
            raise UnknownMethod(f"the contract has no method {method!r}")
        if not isinstance(args, dict):
            raise InvalidArguments("args must be a JSON object")
        _, handler = entry
        result = handler(self._state, ctx, args)
        backup_gate.track(self._state, ctx)  # the call may have closed or opened a domain
        return result

    def on_block(self, height: int, timestamp_ms: int) -> list[Event]:
        """Advance to block ``height`` with block time ``timestamp_ms`` (before its
        transactions): fail timed-out requests."""
        return signing.expire_requests(self._state, height, timestamp_ms)

    def next_timeout_ms(self) -> int | None:
        """The earliest block time at which ``on_block`` would fail a request (None: no
        request pending). A ledger that makes blocks only when something happens makes one
        at this time, so that timeouts fire on time without a block every few ms."""
        return signing.next_deadline_ms(self._state)

    def view(self, method: str, args: dict[str, Any]) -> Any:
        view = VIEWS.get(method)
        if view is None:
            raise UnknownMethod(f"the contract has no view {method!r}")
        if not isinstance(args, dict):
            raise InvalidArguments("args must be a JSON object")
        return view(self._state, args)
