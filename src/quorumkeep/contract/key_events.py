"""Key events: the per-domain, per-attempt rounds of key generation and resharing.

Both phases share the same life cycle. Every domain has one current attempt; a node
acts on ``{domain_id, epoch, attempt}`` and votes when its protocol run is done. An attempt
can be aborted (a node saw its run fail, or votes disagree); the next attempt then starts
with no votes, so nodes rerun the protocol under a fresh key event id. Only the set being
created may abort: the participants during key generation, the new set during resharing.
"""

from __future__ import annotations

from typing import Any

from quorumkeep.contract.access import require_initialized, require_node_key
from quorumkeep.contract.args import check_fields
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    InvalidKeyEvent,
    InvalidKeyPackage,
    InvalidState,
    NotParticipant,
)
from quorumkeep.contract.events import KEY_EVENT_ABORTED, Event
from quorumkeep.contract.key_packages import package_problem
from quorumkeep.contract.records import VerifyingShares
from quorumkeep.contract.state import (
    ContractState,
    Initializing,
    KeyEvent,
    KeyEventId,
    Participants,
    Resharing,
)


def current_event(events: list[KeyEvent], key_event_id: KeyEventId) -> KeyEvent:
    """The open attempt ``key_event_id`` names, or InvalidKeyEvent saying why not."""
    for event in events:
        if event.domain.domain_id != key_event_id.domain_id:
            continue
        if event.complete:
            raise InvalidKeyEvent(f"the key event of domain {key_event_id.domain_id} is complete")
        if event.id != key_event_id:
            current = event.id
            raise InvalidKeyEvent(
                f"the current key event of domain {current.domain_id} is epoch {current.epoch} "
                f"attempt {current.attempt}"
            )
        return event
    raise InvalidKeyEvent(f"no key event is open for domain {key_event_id.domain_id}")


def check_voted_package(
    event: KeyEvent, public_key: bytes, shares: VerifyingShares, participants: Participants
) -> None:
    """InvalidKeyPackage unless (public_key, shares) is a sound package for ``participants``.

    A package equal to the one every earlier vote of this attempt carried was checked
    when first voted (the set cannot change during an attempt): it is not checked again.
    """
    agreed = next(iter(event.votes.values()), None)
    if shares == event.verifying_shares and public_key == agreed:
        return
    problem = package_problem(public_key, shares, participants)
    if problem is not None:
        raise InvalidKeyPackage(problem)


def disagreement(event: KeyEvent, public_key: bytes, shares: VerifyingShares) -> str | None:
    """Why this vote differs from the attempt's earlier votes (then it aborts), or None."""
    if any(v != public_key for v in event.votes.values()):
        return "participants voted different public keys"
    if event.verifying_shares is not None and event.verifying_shares != shares:
        return "participants voted different verifying shares"
    return None


def abort_attempt(event: KeyEvent, reason: str) -> Event:
    """End the current attempt and open the next one, with no votes."""
    old = event.id
    event.attempt += 1
    event.votes.clear()
    event.verifying_shares = None
    return Event(
        KEY_EVENT_ABORTED,
        {"key_event_id": old.to_json(), "next_key_event_id": event.id.to_json(), "reason": reason},
    )


def vote_abort_key_event(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    check_fields(args, "args", ["key_event_id"])
    key_event_id = KeyEventId.from_json(args["key_event_id"], "key_event_id")
    require_initialized(state)
    protocol = state.protocol
    if isinstance(protocol, Initializing):
        events = protocol.generating
        info = protocol.running.parameters.get(ctx.predecessor)
    elif isinstance(protocol, Resharing):
        # Only the new set may abort: a member the proposal removes would otherwise abort
        # every attempt as it opens and so stall its own removal forever. The new set
        # notices any failed run itself (its members are the ones who receive nothing).
        events = protocol.resharing
        info = protocol.parameters.get(ctx.predecessor)
    else:
        raise InvalidState(
            f"vote_abort_key_event needs Initializing or Resharing, the protocol is {protocol.name}"
        )
    if info is None:
        raise NotParticipant(f"{ctx.predecessor} takes no part in this key event")
    require_node_key(ctx, info)
    event = current_event(events, key_event_id)
    aborted = abort_attempt(event, f"aborted by {ctx.predecessor}")
    return CallResult({"next_key_event_id": event.id.to_json()}, [aborted])
