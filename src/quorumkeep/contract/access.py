"""Who may call: state gates and caller checks shared by every method.

The ledger already proved the transaction was signed by ``ctx.signer_public_key`` of
``ctx.predecessor``; these checks decide whether that account and that key may do what
the method does.
"""

from __future__ import annotations

from quorumkeep.contract.context import CallContext
from quorumkeep.contract.errors import (
    NotInitialized,
    NotOperator,
    NotParticipant,
    ProtocolStateNotRunning,
    SignerKeyMismatch,
)
from quorumkeep.contract.state import ContractState, ParticipantInfo, Participants, Running


def require_initialized(state: ContractState) -> Running:
    """The serving Running state; NotInitialized before `init`."""
    serving = state.serving()
    if serving is None:
        raise NotInitialized("the contract is not initialized")
    return serving


def require_running(state: ContractState) -> Running:
    protocol = state.protocol
    if isinstance(protocol, Running):
        return protocol
    require_initialized(state)
    raise ProtocolStateNotRunning(f"the protocol is {protocol.name}, not Running")


def require_participant(parameters: Participants, account: str, role: str) -> ParticipantInfo:
    info = parameters.get(account)
    if info is None:
        raise NotParticipant(f"{account} is not {role}")
    return info


def require_operator(ctx: CallContext) -> None:
    """Operator-only: the transaction must be signed by a full-access key of the account."""
    if not ctx.full_access:
        raise NotOperator(f"this method needs a full-access key of {ctx.predecessor}")


def require_node_key(ctx: CallContext, info: ParticipantInfo) -> None:
    """A node call must come from the node's registered signer key (or the operator).

    A decommissioned node may still hold a function-call key on its operator's account;
    checking the key, not only the account, keeps its calls out once a migration has
    replaced its signer key.
    """
    if not ctx.full_access and ctx.signer_public_key != info.signer_public_key:
        raise SignerKeyMismatch(
            f"the transaction is not signed by the signer key registered for {info.account}"
        )
