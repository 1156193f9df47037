"""Backup before use: a domain signs only once enough operators' backups of the epoch in
force are confirmed.

A key whose shares are held nowhere but in the nodes is lost with them; funds sent to an
address derived from it before any backup exists are at risk. So each domain has a
**policy** — how many operators' backup services must have confirmed a backup of the
serving epoch (default: all serving participants; the `vote_add_domains` vote creating the
domain may give a count, ``backups_required``, 0..n) — and `sign` on that domain is refused
with ``KeyNotBackedUp`` until the policy is met.

`confirm_backup(epoch, keyset_hash)` is sent by an operator's backup service, signed by its
registered identity key (a function-call key of the operator's account limited to this
method), after it verified its stored shares against the contract's public key packages.
It counts for every domain of the keyset it names, for that epoch only.

Rules, in the order they are checked:

- the caller is a participant of the serving set (``NotParticipant``);
- the transaction is signed by the identity key of the account's registered backup
  service — not a node key, not a full-access key (``SignerKeyMismatch``);
- the serving keyset has a domain (``DomainNotFound``: nothing to back up);
- ``epoch`` is the serving epoch and ``keyset_hash`` the serving keyset's hash
  (``KeysetMismatch``: a backup of another keyset proves nothing about this one);
- the account has not already confirmed this keyset (``DuplicateVote``).

Effective count: a policy count above the serving set's size counts as the whole set (a
resharing that shrinks the set must not lock a domain forever); "all" is the serving set's
size. Only confirmations of serving participants for the serving epoch count.

After a resharing: the new epoch's shares are new, and a backup of the old ones cannot
restore a node of the new set, so the new epoch needs its own confirmations and the domain
does not sign until they arrive (requests admitted before stay pending and are answered).
During the resharing itself the previous epoch keeps signing under its confirmations.
Registering a new backup service for an account forgets the account's confirmation: the
confirmation was the old service's, and the new one holds nothing yet.

The wait is recorded: after every successful call, :func:`track` notes for each domain of
the serving keyset the block at which it began to wait for backups (its key or a new epoch
came into force, or it stopped signing at the same epoch) and the block at which its
policy was met again; ``backup_status`` reports both and the delay between them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quorumkeep.contract.access import require_initialized, require_participant
from quorumkeep.contract.args import check_fields, expect_hex, expect_int
from quorumkeep.contract.backup_gate_state import BackupConfirmation, BackupGate, GateWait
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    DomainNotFound,
    DuplicateVote,
    KeysetMismatch,
    SignerKeyMismatch,
)
from quorumkeep.contract.events import BACKUP_CONFIRMED, BACKUP_POLICY_MET, Event
from quorumkeep.contract.state import ContractState, ProposedDomain, Running

ALL = "all"
"""A policy's JSON when the domain requires every serving participant's backup."""


# --- policies ----------------------------------------------------------------------------


def set_policies(gate: BackupGate, domains: Iterable[ProposedDomain]) -> None:
    """Record the explicit policies of newly voted domains (the default, all, is implicit)."""
    for d in domains:
        if d.backups_required is not None:
            gate.policies[d.domain_id] = d.backups_required


def drop_policies(gate: BackupGate, domain_ids: Iterable[int]) -> None:
    for domain_id in domain_ids:
        gate.policies.pop(domain_id, None)


def policy_json(gate: BackupGate, domain_id: int) -> int | str:
    return gate.policies.get(domain_id, ALL)


def required(gate: BackupGate, serving: Running, domain_id: int) -> int:
    """How many serving participants' confirmations the domain needs now."""
    n = len(serving.parameters)
    return min(gate.policies.get(domain_id, n), n)


def counts_for(confirmation: BackupConfirmation | None, serving: Running, domain_id: int) -> bool:
    return (
        confirmation is not None
        and confirmation.epoch == serving.epoch
        and domain_id in confirmation.domain_ids
    )


def confirmed(gate: BackupGate, serving: Running, domain_id: int) -> list[str]:
    """Serving participants (in participant id order) whose backup of the domain counts."""
    return [
        m.account
        for m in serving.parameters.members
        if counts_for(gate.confirmations.get(m.account), serving, domain_id)
    ]


def signing_problem(gate: BackupGate, serving: Running, domain_id: int) -> str | None:
    """Why the domain may not sign yet (its policy is not met), or None."""
    need = required(gate, serving, domain_id)
    have = confirmed(gate, serving, domain_id)
    if len(have) >= need:
        return None
    missing = [m.account for m in serving.parameters.members if m.account not in have]
    return (
        f"domain {domain_id} is not backed up at epoch {serving.epoch}: {len(have)} of {need} "
        f"backup confirmations; missing: {', '.join(missing)}"
    )


def forget(gate: BackupGate, account: str) -> None:
    """The account's backup service was replaced: its confirmation no longer holds."""
    gate.confirmations.pop(account, None)


def track(state: ContractState, ctx: CallContext) -> None:
    """Record, at the block of ``ctx``, where a domain of the serving keyset began or
    ended a wait for backups (a pure function of the state before and after a call)."""
    serving = state.serving()
    gate = state.backup_gate
    domain_ids = set() if serving is None else set(serving.keyset.domain_ids)
    for gone in [d for d in gate.waits if d not in domain_ids]:
        del gate.waits[gone]
    if serving is None:
        return
    here = (ctx.block_height, ctx.timestamp_ms)
    for domain_id in serving.keyset.domain_ids:
        is_open = signing_problem(gate, serving, domain_id) is None
        wait = gate.waits.get(domain_id)
        opened = here if is_open else (None, None)
        if wait is None or wait.epoch != serving.epoch:
            gate.waits[domain_id] = GateWait(serving.epoch, *here, *opened)
        elif is_open and wait.opened_height is None:
            gate.waits[domain_id] = GateWait(wait.epoch, wait.since_height, wait.since_ms, *here)
        elif not is_open and wait.opened_height is not None:
            gate.waits[domain_id] = GateWait(serving.epoch, *here, None, None)


def wait_json(wait: GateWait | None) -> dict[str, Any] | None:
    if wait is None:
        return None
    return {**wait.to_json(), "waited_ms": wait.waited_ms}


# --- confirm_backup ------------------------------------------------------------------------


def confirm_backup(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["epoch", "keyset_hash"])
    epoch = expect_int(args["epoch"], "epoch")
    keyset_hash = expect_hex(args["keyset_hash"], "keyset_hash", 32, 32)
    serving = require_initialized(state)
    account = ctx.predecessor
    require_participant(serving.parameters, account, "a participant of the signing set")
    service = state.backup_services.get(account)
    if service is None:
        raise SignerKeyMismatch(f"{account} has no registered backup service")
    if ctx.signer_public_key != service.identity_public_key:
        raise SignerKeyMismatch(
            f"the transaction is not signed by the identity key of {account}'s backup service"
        )
    keyset = serving.keyset
    if not keyset.domains:
        raise DomainNotFound("the keyset has no domain: there is nothing to back up")
    if epoch != keyset.epoch:
        raise KeysetMismatch(
            f"the backup is of epoch {epoch}; the epoch in force is {keyset.epoch}"
        )
    current_hash = keyset.hash
    if keyset_hash != current_hash:
        raise KeysetMismatch(
            f"the keyset hash is not the hash of the keyset in force (epoch {keyset.epoch}, "
            f"domains {list(keyset.domain_ids)})"
        )
    gate = state.backup_gate
    previous = gate.confirmations.get(account)
    if previous is not None and previous.keyset_hash == current_hash and previous.epoch == epoch:
        raise DuplicateVote(f"{account} already confirmed a backup of this keyset")

    before = {d: signing_problem(gate, serving, d) is None for d in keyset.domain_ids}
    confirmation = BackupConfirmation(
        epoch, current_hash, keyset.domain_ids, ctx.block_height, ctx.timestamp_ms
    )
    gate.confirmations[account] = confirmation
    events = [Event(BACKUP_CONFIRMED, {"account": account, **confirmation.to_json()})]
    opened = []
    for domain_id in keyset.domain_ids:
        if not before[domain_id] and signing_problem(gate, serving, domain_id) is None:
            opened.append(domain_id)
            events.append(
                Event(
                    BACKUP_POLICY_MET,
                    {
                        "domain_id": domain_id,
                        "epoch": epoch,
                        "confirmed": confirmed(gate, serving, domain_id),
                        "required": required(gate, serving, domain_id),
                    },
                )
            )
    return CallResult({"epoch": epoch, "domains_opened": opened}, events)


# --- the view ------------------------------------------------------------------------------


def backup_status(state: ContractState, args: dict[str, Any]) -> Any:
    """Per domain: the policy, who confirmed, who is missing, whether it signs; per serving
    participant: whether a backup service is registered and its latest confirmation."""
    check_fields(args, "args", [])
    serving = require_initialized(state)
    gate = state.backup_gate
    keyset = serving.keyset
    keyset_hash = keyset.hash
    domains = []
    for d in keyset.domains:
        have = confirmed(gate, serving, d.domain_id)
        need = required(gate, serving, d.domain_id)
        domains.append(
            {
                "domain_id": d.domain_id,
                "policy": policy_json(gate, d.domain_id),
                "required": need,
                "confirmed": have,
                "missing": [m.account for m in serving.parameters.members if m.account not in have],
                "signing_allowed": len(have) >= need,
                "wait": wait_json(gate.waits.get(d.domain_id)),
            }
        )
    operators = {}
    for m in serving.parameters.members:
        confirmation = gate.confirmations.get(m.account)
        operators[m.account] = {
            "participant_id": m.participant_id,
            "backup_service": m.account in state.backup_services,
            "confirmation": None if confirmation is None else confirmation.to_json(),
            "current": confirmation is not None
            and confirmation.epoch == keyset.epoch
            and confirmation.keyset_hash == keyset_hash,
        }
    return {
        "protocol_state": state.protocol.name,
        "epoch": keyset.epoch,
        "keyset_hash": keyset_hash.hex(),
        "domains": domains,
        "operators": operators,
    }
