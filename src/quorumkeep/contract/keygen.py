"""Adding domains and generating their keys (the Initializing state).

Adding a domain changes what every participant must hold, so every participant must
vote for the same list. Key generation runs per domain; a key counts only once every
participant voted the same public key package (group key and verifying shares) — one
dissenting vote aborts the attempt, because a DKG that gave two nodes different results
is broken and must be rerun, not outvoted.
"""

from __future__ import annotations

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
    expect_ed25519_key,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    expect_verifying_shares,
)
from quorumkeep.contract.backup_gate import drop_policies, set_policies
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import DuplicateVote, InvalidProposal, InvalidState
from quorumkeep.contract.events import (
    ADD_DOMAINS_VOTED,
    CANCEL_KEYGEN_VOTED,
    DOMAINS_ADDED,
    KEY_GENERATED,
    KEYGEN_CANCELLED,
    PK_VOTED,
    Event,
    protocol_state_changed,
)
from quorumkeep.contract.key_events import (
    abort_attempt,
    check_voted_package,
    current_event,
    disagreement,
)
from quorumkeep.contract.migration import cancel_all_migrations
from quorumkeep.contract.records import MAX_PARTICIPANTS, verifying_shares_json
from quorumkeep.contract.state import (
    MAX_DOMAINS,
    SCHEMES,
    ContractState,
    DomainKey,
    Initializing,
    KeyEvent,
    KeyEventId,
    Keyset,
    ProposedDomain,
    Running,
)

MAX_DOMAINS_PER_PROPOSAL = 8


def _require_initializing(state: ContractState, method: str) -> Initializing:
    require_initialized(state)
    protocol = state.protocol
    if not isinstance(protocol, Initializing):
        raise InvalidState(
            f"{method} needs the Initializing state, the protocol is {protocol.name}"
        )
    return protocol


def vote_add_domains(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["domains"])
    items = expect_list(args["domains"], "domains", 1, MAX_DOMAINS_PER_PROPOSAL)
    parsed: list[tuple[int | None, str, int | None]] = []
    for i, item in enumerate(items):
        obj = expect_object(item, f"domains[{i}]")
        check_fields(obj, f"domains[{i}]", ["scheme"], ["domain_id", "backups_required"])
        domain_id = None
        if "domain_id" in obj:
            domain_id = expect_int(obj["domain_id"], f"domains[{i}].domain_id")
        required = None
        if "backups_required" in obj:
            required = expect_int(
                obj["backups_required"], f"domains[{i}].backups_required", 0, MAX_PARTICIPANTS
            )
        scheme = expect_str(obj["scheme"], f"domains[{i}].scheme", 32)
        parsed.append((domain_id, scheme, required))
    running = require_running(state)
    account = ctx.predecessor
    require_participant(running.parameters, account, "a participant")
    require_operator(ctx)

    proposal_list: list[ProposedDomain] = []
    for i, (domain_id, scheme, required) in enumerate(parsed):
        expected = state.next_domain_id + i
        if domain_id is not None and domain_id != expected:
            raise InvalidProposal(
                f"domains[{i}].domain_id must be {expected}: ids are assigned in order"
            )
        if scheme not in SCHEMES:
            raise InvalidProposal(f"scheme {scheme!r} is not supported (supported: Ed25519)")
        if required is not None and required > len(running.parameters):
            raise InvalidProposal(
                f"domains[{i}].backups_required is {required}, more than the "
                f"{len(running.parameters)} participants"
            )
        proposal_list.append(ProposedDomain(expected, scheme, required))
    if len(running.keyset.domains) + len(proposal_list) > MAX_DOMAINS:
        raise InvalidProposal(f"the contract holds at most {MAX_DOMAINS} domains")
    proposal = tuple(proposal_list)
    if running.add_domains_votes.get(account) == proposal:
        raise DuplicateVote(f"{account} already voted for these domains")

    running.add_domains_votes[account] = proposal
    votes = sum(
        1
        for m in running.parameters.members
        if running.add_domains_votes.get(m.account) == proposal
    )
    required = len(running.parameters)
    events = [
        Event(
            ADD_DOMAINS_VOTED,
            {
                "account": account,
                "domains": [d.to_json() for d in proposal],
                "votes": votes,
                "required": required,
            },
        )
    ]
    if votes == required:
        events += _start_keygen(state, running, proposal)
    value = {"votes": votes, "required": required, "protocol_state": state.protocol.name}
    return CallResult(value, events)


def _start_keygen(
    state: ContractState, running: Running, domains: tuple[ProposedDomain, ...]
) -> list[Event]:
    settled = running.settled()
    generating = [KeyEvent(d.domain, settled.epoch, 0) for d in domains]
    state.protocol = Initializing(settled, generating)
    state.next_domain_id += len(domains)
    set_policies(state.backup_gate, domains)
    events = [
        protocol_state_changed(Running.name, Initializing.name, settled.epoch),
        Event(
            DOMAINS_ADDED,
            {
                "epoch": settled.epoch,
                "domains": [d.to_json() for d in domains],
                "key_event_ids": [e.id.to_json() for e in generating],
            },
        ),
    ]
    return events + cancel_all_migrations(state, "key generation started")


def _finish_keygen(state: ContractState, initializing: Initializing) -> list[Event]:
    """Back to Running with the pre-existing domains and every domain whose key is done."""
    running = initializing.running
    new_keys = [
        DomainKey(e.domain.domain_id, e.domain.scheme, e.public_key, e.verifying_shares)
        for e in initializing.generating
        if e.public_key is not None and e.verifying_shares is not None
    ]
    domains = tuple(sorted((*running.keyset.domains, *new_keys), key=lambda d: d.domain_id))
    # Domains dropped by a cancelled key generation never sign: their policies go too.
    drop_policies(
        state.backup_gate, [e.domain.domain_id for e in initializing.generating if not e.complete]
    )
    state.protocol = Running(Keyset(running.epoch, domains), running.next_epoch, running.parameters)
    return [protocol_state_changed(Initializing.name, Running.name, running.epoch)]


def vote_pk(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["key_event_id", "public_key", "verifying_shares"])
    key_event_id = KeyEventId.from_json(args["key_event_id"], "key_event_id")
    public_key = expect_ed25519_key(args["public_key"], "public_key")
    shares = expect_verifying_shares(args["verifying_shares"], "verifying_shares", MAX_PARTICIPANTS)
    initializing = _require_initializing(state, "vote_pk")
    account = ctx.predecessor
    parameters = initializing.running.parameters
    info = require_participant(parameters, account, "a participant")
    require_node_key(ctx, info)
    event = current_event(initializing.generating, key_event_id)
    if account in event.votes:
        raise DuplicateVote(f"{account} already voted in this key event")
    check_voted_package(event, public_key, shares, parameters)

    voted = Event(
        PK_VOTED,
        {
            "account": account,
            "key_event_id": key_event_id.to_json(),
            "public_key": public_key.hex(),
        },
    )
    reason = disagreement(event, public_key, shares)
    if reason is not None:
        aborted = abort_attempt(event, reason)
        return CallResult(
            {"status": "aborted", "next_key_event_id": event.id.to_json()}, [voted, aborted]
        )
    event.votes[account] = public_key
    event.verifying_shares = shares
    events = [voted]
    status = "voted"
    if len(event.votes) == len(parameters):
        event.public_key = public_key
        status = "generated"
        events.append(
            Event(
                KEY_GENERATED,
                {
                    "key_event_id": key_event_id.to_json(),
                    "domain_id": event.domain.domain_id,
                    "scheme": event.domain.scheme,
                    "public_key": public_key.hex(),
                    "threshold": parameters.threshold,
                    "verifying_shares": verifying_shares_json(shares),
                },
            )
        )
        if all(e.complete for e in initializing.generating):
            events += _finish_keygen(state, initializing)
    return CallResult({"status": status}, events)


def vote_cancel_keygen(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", [])
    initializing = _require_initializing(state, "vote_cancel_keygen")
    account = ctx.predecessor
    parameters = initializing.running.parameters
    require_participant(parameters, account, "a participant")
    require_operator(ctx)
    if account in initializing.cancel_votes:
        raise DuplicateVote(f"{account} already voted to cancel key generation")

    initializing.cancel_votes.add(account)
    votes = len(initializing.cancel_votes)
    required = parameters.threshold
    events = [
        Event(CANCEL_KEYGEN_VOTED, {"account": account, "votes": votes, "required": required})
    ]
    if votes >= required:
        cancelled = [e.domain.domain_id for e in initializing.generating if not e.complete]
        kept = [e.domain.domain_id for e in initializing.generating if e.complete]
        events.append(
            Event(
                KEYGEN_CANCELLED,
                {
                    "epoch": initializing.epoch,
                    "cancelled_domain_ids": cancelled,
                    "kept_domain_ids": kept,
                },
            )
        )
        events += _finish_keygen(state, initializing)
    value = {"votes": votes, "required": required, "protocol_state": state.protocol.name}
    return CallResult(value, events)
