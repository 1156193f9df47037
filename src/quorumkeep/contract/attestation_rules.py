"""Attestation facts other contract modules consult (kept apart to avoid import cycles)."""

from __future__ import annotations

from quorumkeep.contract.state import ContractState, Resharing


def marked_and_leaving(state: ContractState, account: str) -> bool:
    """``account`` is marked for its attestation and not in the set being reshared to."""
    att = state.attestation
    if att is None or account not in att.marked:
        return False
    protocol = state.protocol
    return isinstance(protocol, Resharing) and protocol.parameters.get(account) is None
