"""Changing the participant set or threshold (the Resharing state), and candidates.

A resharing needs the old set's consent (a threshold of its members) and every newcomer's
(a node cannot be enrolled without its operator). Existing members keep their participant
id and their info as the contract knows it; newcomers get fresh ids, assigned in account
order from ``next_participant_id``, so independent voters compute the same proposal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from quorumkeep.contract.access import (
    require_initialized,
    require_node_key,
    require_operator,
    require_participant,
    require_running,
)
from quorumkeep.contract.args import (
    check_fields,
    expect_int,
    expect_list,
    expect_object,
    expect_verifying_shares,
)
from quorumkeep.contract.attestation import (
    node_evidence,
    require_attested_newcomers,
    store_record,
)
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    AlreadyParticipant,
    DuplicateVote,
    InvalidArguments,
    InvalidProposal,
    InvalidState,
    InvalidThreshold,
    KeyInUse,
    NotParticipant,
    SignerKeyMismatch,
)
from quorumkeep.contract.events import (
    CANCEL_RESHARING_VOTED,
    DOMAIN_RESHARED,
    NEW_PARAMETERS_VOTED,
    PARTICIPANT_INFO_SUBMITTED,
    RESHARED_VOTED,
    RESHARING_CANCELLED,
    RESHARING_COMPLETED,
    RESHARING_STARTED,
    Event,
    participants_changed,
    protocol_state_changed,
)
from quorumkeep.contract.key_events import (
    abort_attempt,
    check_voted_package,
    current_event,
    disagreement,
)
from quorumkeep.contract.migration import cancel_all_migrations, current_accounts
from quorumkeep.contract.records import MAX_PARTICIPANTS, verifying_shares_json
from quorumkeep.contract.rules import duplicate_problem, key_clash, threshold_problem
from quorumkeep.contract.state import (
    UNASSIGNED_ID,
    ContractState,
    DomainKey,
    KeyEvent,
    KeyEventId,
    Keyset,
    ParticipantInfo,
    Participants,
    Resharing,
    Running,
    candidate_json,
)

ProposalKey = tuple[int, tuple[tuple[str, ParticipantInfo | None], ...]]


def _require_resharing(state: ContractState, method: str) -> Resharing:
    require_initialized(state)
    protocol = state.protocol
    if not isinstance(protocol, Resharing):
        raise InvalidState(f"{method} needs the Resharing state, the protocol is {protocol.name}")
    return protocol


def normalize_proposal(
    state: ContractState, running: Running, members: list[ParticipantInfo], threshold: int
) -> Participants:
    """The proposal as the contract will apply it, or the reason it cannot be applied."""
    problem = duplicate_problem(members)
    if problem is not None:
        raise InvalidProposal(problem)
    current = running.parameters
    newcomers = sorted(m.account for m in members if current.get(m.account) is None)
    fresh = {a: state.next_participant_id + i for i, a in enumerate(newcomers)}
    out: list[ParticipantInfo] = []
    for m in members:
        known = current.get(m.account)
        if known is not None:
            if m.participant_id not in (UNASSIGNED_ID, known.participant_id):
                raise InvalidProposal(f"{m.account} keeps participant id {known.participant_id}")
            if dataclasses.replace(m, participant_id=known.participant_id) != known:
                raise InvalidProposal(
                    f"the info of {m.account} differs from the contract's; "
                    "a node changes machines by a migration"
                )
            out.append(known)
            continue
        pid = fresh[m.account]
        if m.participant_id not in (UNASSIGNED_ID, pid):
            raise InvalidProposal(f"the new participant {m.account} gets participant id {pid}")
        clash = key_clash(None, m.tls_public_key, m.signer_public_key, current.members)
        if clash is not None:
            raise InvalidProposal(f"{m.account}: {clash}")
        out.append(dataclasses.replace(m, participant_id=pid))
    problem = threshold_problem(threshold, len(out), resharing=True)
    if problem is not None:
        raise InvalidThreshold(problem)
    staying = sum(1 for m in out if current.get(m.account) is not None)
    if staying < current.threshold:
        raise InvalidProposal(
            f"only {staying} current participants stay; the current threshold "
            f"{current.threshold} must hold the key through the resharing"
        )
    return Participants(threshold, tuple(sorted(out, key=lambda m: m.participant_id)))


def proposal_key(running: Running, proposal: Participants) -> ProposalKey:
    """What makes two votes the same proposal.

    Existing members count by account only: a migration concluded between two votes
    changes such a member's info, and must not split the vote.
    """
    current = running.parameters
    return (
        proposal.threshold,
        tuple(
            (m.account, None if current.get(m.account) is not None else m)
            for m in sorted(proposal.members, key=lambda m: m.account)
        ),
    )


def vote_new_parameters(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["epoch", "proposal"])
    epoch = expect_int(args["epoch"], "epoch")
    obj = expect_object(args["proposal"], "proposal")
    check_fields(obj, "proposal", ["participants", "threshold"])
    items = expect_list(obj["participants"], "proposal.participants", 1, MAX_PARTICIPANTS)
    members = [
        ParticipantInfo.from_json(item, f"proposal.participants[{i}]", id_required=False)
        for i, item in enumerate(items)
    ]
    threshold = expect_int(obj["threshold"], "proposal.threshold")
    running = require_running(state)
    account = ctx.predecessor
    current = running.parameters
    if current.get(account) is None and all(m.account != account for m in members):
        raise NotParticipant(f"{account} is neither a participant nor in the proposal")
    require_operator(ctx)
    if epoch != running.next_epoch:
        raise InvalidProposal(f"epoch must be {running.next_epoch}, the next epoch")
    proposal = normalize_proposal(state, running, members, threshold)
    require_attested_newcomers(state, ctx, running, proposal)
    key = proposal_key(running, proposal)
    previous = running.parameters_votes.get(account)
    if previous is not None and proposal_key(running, previous) == key:
        raise DuplicateVote(f"{account} already voted for this proposal")

    running.parameters_votes[account] = proposal
    agreeing = {a for a, p in running.parameters_votes.items() if proposal_key(running, p) == key}
    newcomers = proposal.accounts - current.accounts
    old_votes = len(agreeing & current.accounts)
    new_votes = len(agreeing & newcomers)
    events = [
        Event(
            NEW_PARAMETERS_VOTED,
            {
                "account": account,
                "epoch": epoch,
                "proposal": proposal.to_json(),
                "old_votes": old_votes,
                "old_required": current.threshold,
                "new_votes": new_votes,
                "new_required": len(newcomers),
            },
        )
    ]
    if old_votes >= current.threshold and new_votes == len(newcomers):
        events += _start_resharing(state, running, proposal, epoch)
    value = {
        "old_votes": old_votes,
        "old_required": current.threshold,
        "new_votes": new_votes,
        "new_required": len(newcomers),
        "protocol_state": state.protocol.name,
    }
    return CallResult(value, events)


def _start_resharing(
    state: ContractState, running: Running, proposal: Participants, epoch: int
) -> list[Event]:
    settled = running.settled()
    resharing = Resharing(
        previous=settled,
        epoch=epoch,
        parameters=proposal,
        resharing=[KeyEvent(d.domain, epoch, 0) for d in settled.keyset.domains],
    )
    state.protocol = resharing
    # Ids handed to newcomers are spent even if this resharing is cancelled: never reused.
    state.next_participant_id = max(
        state.next_participant_id, *(m.participant_id + 1 for m in proposal.members)
    )
    events = [
        protocol_state_changed(Running.name, Resharing.name, epoch),
        Event(
            RESHARING_STARTED,
            {
                "epoch": epoch,
                "previous_epoch": settled.epoch,
                **proposal.to_json(),
                "key_event_ids": [e.id.to_json() for e in resharing.resharing],
            },
        ),
    ]
    events += cancel_all_migrations(state, "resharing started")
    if not resharing.resharing:
        events += _complete_resharing(state, resharing)
    return events


def _complete_resharing(state: ContractState, resharing: Resharing) -> list[Event]:
    """Running at the new epoch: same group keys, the new set's verifying shares."""
    reshared = {e.domain.domain_id: e.verifying_shares for e in resharing.resharing}
    domains: list[DomainKey] = []
    for d in resharing.previous.keyset.domains:
        shares = reshared[d.domain_id]
        assert shares is not None  # every key event is complete: it holds the agreed shares
        domains.append(dataclasses.replace(d, verifying_shares=shares))
    keyset = Keyset(resharing.epoch, tuple(domains))
    running = Running(keyset, resharing.epoch + 1, resharing.parameters)
    state.protocol = running
    for account in resharing.parameters.accounts:
        state.candidates.pop(account, None)
    return [
        Event(
            RESHARING_COMPLETED,
            {
                "epoch": resharing.epoch,
                "previous_epoch": resharing.previous.epoch,
                **resharing.parameters.to_json(),
            },
        ),
        participants_changed(resharing.epoch, resharing.parameters.to_json(), "resharing"),
        protocol_state_changed(Resharing.name, Running.name, resharing.epoch),
    ]


def vote_reshared(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["key_event_id", "verifying_shares"])
    key_event_id = KeyEventId.from_json(args["key_event_id"], "key_event_id")
    shares = expect_verifying_shares(args["verifying_shares"], "verifying_shares", MAX_PARTICIPANTS)
    resharing = _require_resharing(state, "vote_reshared")
    account = ctx.predecessor
    info = require_participant(resharing.parameters, account, "a participant of the new set")
    require_node_key(ctx, info)
    event = current_event(resharing.resharing, key_event_id)
    if account in event.votes:
        raise DuplicateVote(f"{account} already voted in this key event")
    domain = resharing.previous.keyset.get(event.domain.domain_id)
    assert domain is not None  # every resharing event is for a domain of the previous keyset
    check_voted_package(event, domain.public_key, shares, resharing.parameters)

    voted = Event(RESHARED_VOTED, {"account": account, "key_event_id": key_event_id.to_json()})
    reason = disagreement(event, domain.public_key, shares)
    if reason is not None:
        aborted = abort_attempt(event, reason)
        return CallResult(
            {"status": "aborted", "next_key_event_id": event.id.to_json()}, [voted, aborted]
        )
    event.votes[account] = domain.public_key
    event.verifying_shares = shares
    events = [voted]
    status = "voted"
    if len(event.votes) == len(resharing.parameters):
        event.public_key = domain.public_key
        status = "reshared"
        events.append(
            Event(
                DOMAIN_RESHARED,
                {
                    "key_event_id": key_event_id.to_json(),
                    "domain_id": domain.domain_id,
                    "public_key": domain.public_key.hex(),
                    "threshold": resharing.parameters.threshold,
                    "verifying_shares": verifying_shares_json(shares),
                },
            )
        )
        if all(e.complete for e in resharing.resharing):
            events += _complete_resharing(state, resharing)
            status = "completed"
    return CallResult({"status": status}, events)


def vote_cancel_resharing(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    check_fields(args, "args", [])
    resharing = _require_resharing(state, "vote_cancel_resharing")
    account = ctx.predecessor
    previous = resharing.previous
    require_participant(previous.parameters, account, "a participant of the previous set")
    require_operator(ctx)
    if account in resharing.cancel_votes:
        raise DuplicateVote(f"{account} already voted to cancel the resharing")

    resharing.cancel_votes.add(account)
    votes = len(resharing.cancel_votes)
    required = previous.parameters.threshold
    events = [
        Event(CANCEL_RESHARING_VOTED, {"account": account, "votes": votes, "required": required})
    ]
    if votes >= required:
        # The cancelled epoch's number is never used again: shares a node may have stored
        # for it can never be confused with a later resharing's.
        state.protocol = Running(previous.keyset, resharing.epoch + 1, previous.parameters)
        events += [
            Event(
                RESHARING_CANCELLED,
                {"epoch": resharing.epoch, "running_epoch": previous.epoch},
            ),
            protocol_state_changed(Resharing.name, Running.name, previous.epoch),
        ]
    value = {"votes": votes, "required": required, "protocol_state": state.protocol.name}
    return CallResult(value, events)


def submit_participant_info(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    evidence = args.get("attestation")
    fields = {k: v for k, v in args.items() if k != "attestation"}
    info = ParticipantInfo.from_json(fields, "args", id_required=False)
    if info.participant_id != UNASSIGNED_ID:
        raise InvalidArguments("participant_id is assigned by the contract when a node joins")
    serving = require_initialized(state)
    account = ctx.predecessor
    if info.account != account:
        raise InvalidArguments(f"account must be the calling account {account}")
    if account in current_accounts(state):
        raise AlreadyParticipant(f"{account} already is a participant")
    if not ctx.full_access and ctx.signer_public_key != info.signer_public_key:
        raise SignerKeyMismatch("a node submits its own info, signed by its signer key")
    others = list(serving.parameters.members)
    if isinstance(state.protocol, Resharing):
        others += state.protocol.parameters.members
    clash = key_clash(None, info.tls_public_key, info.signer_public_key, others)
    if clash is not None:
        raise KeyInUse(clash)
    record = node_evidence(state, ctx, info, evidence)
    replaced = account in state.candidates
    state.candidates[account] = info
    data = {"account": account, "participant": candidate_json(info), "replaced": replaced}
    events = [Event(PARTICIPANT_INFO_SUBMITTED, data)]
    if record is not None:
        events.append(store_record(state, record))
    return CallResult(None, events)
