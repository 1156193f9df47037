"""TEE attestation in the contract: verified records, voted allow-lists, removal.

Every node, backup service and key provider proves with a quote (``quorumkeep.attest``)
which code it runs, bound to its keys. The contract verifies the quote itself (pure code,
the time is the block's), keeps one record per attested key with its measurement, TCB
status and expiry, and lets anyone call ``verify_attestations`` to mark participants whose
attestation lapsed and reshare them out while the others still meet the threshold.

A contract initialised without an ``attestation`` section enforces nothing (the views say
so); one initialised with a development platform key also accepts development quotes and
is shown as insecure everywhere. docs/contract.md states every rule and why.
"""

from __future__ import annotations

from typing import Any

from quorumkeep.attest import AttestationError, Evidence, Role, verify_evidence
from quorumkeep.attest.errors import DevAttestationRefused as AttestDevRefused
from quorumkeep.contract.access import require_initialized, require_operator, require_running
from quorumkeep.contract.args import check_fields, expect_ed25519_key, expect_int
from quorumkeep.contract.attestation_state import (
    AttestationRecord,
    AttestationState,
    PolicyProposal,
    expect_measurement,
    expect_role,
    expect_tcb_policy,
)
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    AttestationInvalid,
    AttestationRequired,
    DevAttestationRefused,
    DuplicateVote,
    InvalidArguments,
    MeasurementNotAllowed,
    NotParticipant,
    SignerKeyMismatch,
    WouldLockOut,
)
from quorumkeep.contract.events import (
    ATTESTATION_POLICY_CHANGED,
    ATTESTATION_POLICY_VOTED,
    ATTESTATION_SUBMITTED,
    ATTESTATIONS_VERIFIED,
    Event,
)
from quorumkeep.contract.rules import min_resharing_threshold, threshold_problem
from quorumkeep.contract.state import (
    ContractState,
    ParticipantInfo,
    Participants,
    Resharing,
    Running,
)


def now_seconds(ctx: CallContext) -> int:
    return ctx.timestamp_ms // 1000


def verify_record(
    att: AttestationState,
    evidence_json: Any,
    role: Role,
    account: str,
    key_a: bytes,
    key_b: bytes,
    now: int,
) -> AttestationRecord:
    """Verify presented evidence for ``role`` and these keys; the record to store."""
    try:
        evidence = Evidence.from_json(evidence_json)
        attested = verify_evidence(
            evidence, role, key_a, key_b, now, att.dev_platform_public_key, att.tcb_policy
        )
    except AttestDevRefused as exc:
        raise DevAttestationRefused(
            "this contract does not allow development attestation (a production contract)"
        ) from exc
    except AttestationError as exc:
        raise AttestationInvalid(f"[{exc.code}] {exc.message}") from exc
    measurement = attested.measurement
    if not att.is_allowed(role.value, measurement):
        raise MeasurementNotAllowed(
            f"measurement {measurement.measurement_id} is not on the {role.value} allow-list"
        )
    return AttestationRecord(
        role=role.value,
        account=account,
        key=key_a,
        bound_key=key_b,
        kind=attested.report.kind,
        measurement=measurement,
        tcb_status=attested.report.tcb_status,
        advisory_ids=attested.report.advisory_ids,
        attested_at=now,
        expires_at=now + att.validity_seconds,
    )


def record_problem(
    att: AttestationState, record: AttestationRecord | None, role: str, now: int
) -> str | None:
    """Why ``record`` does not (or no longer) attest its key at ``now``, or None."""
    if record is None:
        return "no attestation"
    if record.role != role:
        return f"attested as {record.role}, not {role}"
    if now >= record.expires_at:
        return f"attestation expired at {record.expires_at}"
    if not att.is_allowed(role, record.measurement):
        return f"measurement {record.measurement.measurement_id} was removed from the allow-list"
    if record.kind == "tdx":
        try:
            att.tcb_policy.check(record.tcb_status, record.advisory_ids)
        except AttestationError as exc:
            return f"TCB status no longer accepted ({exc.code})"
    return None


def participant_problem(att: AttestationState, info: ParticipantInfo, now: int) -> str | None:
    """A serving participant's problem; genesis members without a record get a grace time."""
    record = att.records.get(info.tls_public_key)
    if record is None and now < att.genesis_at + att.grace_seconds:
        return None
    if record is not None and record.account != info.account:
        return "the attestation of its TLS key names another account"
    return record_problem(att, record, "node", now)


def _submitted(record: AttestationRecord, replaced: bool) -> Event:
    data = {**record.to_json(), "replaced": replaced}
    return Event(ATTESTATION_SUBMITTED, data)


def store_record(state: ContractState, record: AttestationRecord) -> Event:
    """Keep ``record`` (replacing the key's previous one) and clear a mark it cures."""
    att = state.attestation
    assert att is not None
    replaced = record.key in att.records
    att.records[record.key] = record
    prune_records(state)
    serving = state.serving()
    if serving is not None and record.role == "node":
        info = serving.parameters.get(record.account)
        if info is not None and info.tls_public_key == record.key:
            att.marked.pop(record.account, None)
    return _submitted(record, replaced)


def referenced_keys(state: ContractState) -> set[bytes]:
    """Every key the contract still names: participants (serving and being built),
    candidates, migration destinations, backup services."""
    keys: set[bytes] = set()
    serving = state.serving()
    if serving is not None:
        keys |= {m.tls_public_key for m in serving.parameters.members}
    if isinstance(state.protocol, Resharing):
        keys |= {m.tls_public_key for m in state.protocol.parameters.members}
    keys |= {c.tls_public_key for c in state.candidates.values()}
    keys |= {m.destination.tls_public_key for m in state.migrations.values()}
    keys |= {b.identity_public_key for b in state.backup_services.values()}
    keys |= {p.identity_public_key for p in state.key_providers.providers.values()}
    return keys


def prune_records(state: ContractState) -> None:
    """Forget records of keys the contract no longer names (a migrated-away node's, a
    replaced backup service's): the record set stays bounded by what is in use."""
    att = state.attestation
    if att is None:
        return
    keep = referenced_keys(state)
    for key in [k for k in att.records if k not in keep]:
        del att.records[key]


def node_evidence(
    state: ContractState, ctx: CallContext, info: ParticipantInfo, evidence_json: Any
) -> AttestationRecord | None:
    """The verified record a node's call carries (None when the contract has no policy).

    Raises AttestationRequired when the contract enforces attestation and none was given.
    """
    att = state.attestation
    if att is None:
        if evidence_json is not None:
            raise InvalidArguments("this contract was initialised without attestation")
        return None
    if evidence_json is None:
        raise AttestationRequired("this contract requires an attestation of the node")
    return verify_record(
        att,
        evidence_json,
        Role.NODE,
        info.account,
        info.tls_public_key,
        info.signer_public_key,
        now_seconds(ctx),
    )


def require_valid_node(state: ContractState, ctx: CallContext, tls_key: bytes, why: str) -> None:
    """AttestationRequired unless ``tls_key`` has a valid node attestation now."""
    att = state.attestation
    if att is None:
        return
    problem = record_problem(att, att.records.get(tls_key), "node", now_seconds(ctx))
    if problem is not None:
        raise AttestationRequired(f"{why}: {problem}")


def require_attested_newcomers(
    state: ContractState, ctx: CallContext, running: Running, proposal: Participants
) -> None:
    for m in proposal.members:
        if running.parameters.get(m.account) is None:
            require_valid_node(state, ctx, m.tls_public_key, f"the new participant {m.account}")


def backup_service_evidence(
    state: ContractState,
    ctx: CallContext,
    identity_key: bytes,
    encryption_key: bytes,
    evidence_json: Any,
) -> AttestationRecord | None:
    att = state.attestation
    if att is None:
        if evidence_json is not None:
            raise InvalidArguments("this contract was initialised without attestation")
        return None
    if evidence_json is None:
        if att.require_tee_backup_services:
            raise AttestationRequired("this contract requires TEE backup services")
        return None
    return verify_record(
        att,
        evidence_json,
        Role.BACKUP_SERVICE,
        ctx.predecessor,
        identity_key,
        encryption_key,
        now_seconds(ctx),
    )


def key_provider_evidence(
    state: ContractState,
    ctx: CallContext,
    identity_key: bytes,
    encryption_key: bytes,
    evidence_json: Any,
) -> AttestationRecord | None:
    """The verified record a provider registration carries. Required when the contract
    allow-lists key-provider measurements (it then accepts TEE key providers only)."""
    att = state.attestation
    if att is None:
        if evidence_json is not None:
            raise InvalidArguments("this contract was initialised without attestation")
        return None
    if evidence_json is None:
        if att.allowed.get(Role.KEY_PROVIDER.value):
            raise AttestationRequired(
                "this contract allow-lists key-provider measurements: a key provider registers "
                "with an attestation"
            )
        return None
    return verify_record(
        att,
        evidence_json,
        Role.KEY_PROVIDER,
        ctx.predecessor,
        identity_key,
        encryption_key,
        now_seconds(ctx),
    )


def _require_attestation(state: ContractState) -> AttestationState:
    require_initialized(state)
    if state.attestation is None:
        raise InvalidArguments("this contract was initialised without attestation")
    return state.attestation


def _node_keys(state: ContractState, account: str, tls_key: bytes) -> bytes | None:
    """The signer key registered with ``account``'s ``tls_key`` anywhere in the contract."""
    infos: list[ParticipantInfo] = []
    serving = state.serving()
    if serving is not None:
        infos += serving.parameters.members
    if isinstance(state.protocol, Resharing):
        infos += state.protocol.parameters.members
    candidate = state.candidates.get(account)
    if candidate is not None:
        infos.append(candidate)
    for info in infos:
        if info.account == account and info.tls_public_key == tls_key:
            return info.signer_public_key
    migration = state.migrations.get(account)
    if migration is not None and migration.destination.tls_public_key == tls_key:
        return migration.destination_signer_public_key
    return None


def submit_attestation(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    """Attest (or re-attest) a node's TLS key, the caller's backup service or key provider."""
    check_fields(args, "args", ["role", "attestation"], ["tls_public_key"])
    role = Role(expect_role(args["role"], "role"))
    att = _require_attestation(state)
    account = ctx.predecessor
    now = now_seconds(ctx)
    if role is Role.NODE:
        if "tls_public_key" not in args:
            raise InvalidArguments("a node's attestation names its tls_public_key")
        tls = expect_ed25519_key(args["tls_public_key"], "tls_public_key")
        signer = _node_keys(state, account, tls)
        if signer is None:
            raise NotParticipant(
                f"{account} has no participant, candidate or migration destination with this "
                "TLS key"
            )
        if not ctx.full_access and ctx.signer_public_key != signer:
            raise SignerKeyMismatch(
                "a node attests with the signer key registered with its TLS key"
            )
        record = verify_record(att, args["attestation"], role, account, tls, signer, now)
    elif role is Role.BACKUP_SERVICE:
        if "tls_public_key" in args:
            raise InvalidArguments("a backup service's attestation has no tls_public_key")
        service = state.backup_services.get(account)
        if service is None:
            raise NotParticipant(f"{account} has no registered backup service")
        if not ctx.full_access and ctx.signer_public_key != service.identity_public_key:
            raise SignerKeyMismatch(
                "a backup service attests with its identity key (or the operator's full-access key)"
            )
        record = verify_record(
            att,
            args["attestation"],
            role,
            account,
            service.identity_public_key,
            service.encryption_public_key,
            now,
        )
    else:
        if "tls_public_key" in args:
            raise InvalidArguments("a key provider's attestation has no tls_public_key")
        provider = state.key_providers.providers.get(account)
        if provider is None:
            raise NotParticipant(f"{account} has no registered key provider")
        if not ctx.full_access and ctx.signer_public_key != provider.identity_public_key:
            raise SignerKeyMismatch(
                "a key provider attests with its identity key (or the operator's full-access key)"
            )
        record = verify_record(
            att,
            args["attestation"],
            role,
            account,
            provider.identity_public_key,
            provider.encryption_public_key,
            now,
        )
    event = store_record(state, record)
    return CallResult(record.to_json(), [event])


def _lockout_problem(
    state: ContractState, att: AttestationState, proposal: PolicyProposal, now: int
) -> str | None:
    """Why applying ``proposal`` would lock the network out, or None."""
    if proposal.action == "add":
        return None
    allowed = {role: dict(ms) for role, ms in att.allowed.items()}
    policy = att.tcb_policy
    if proposal.action == "remove":
        assert proposal.role is not None and proposal.measurement is not None
        entries = allowed.setdefault(proposal.role, {})
        entries.pop(proposal.measurement.measurement_id, None)
        if not entries:
            return f"the {proposal.role} allow-list would be empty"
    else:
        assert proposal.policy is not None
        policy = proposal.policy
    after = AttestationState(
        att.dev_platform_public_key,
        att.validity_seconds,
        att.grace_seconds,
        att.require_tee_backup_services,
        att.genesis_at,
        policy,
        allowed,
        records=att.records,
    )
    serving = require_initialized(state)
    valid = sum(
        1
        for m in serving.parameters.members
        if record_problem(after, after.records.get(m.tls_public_key), "node", now) is None
    )
    if valid < serving.parameters.threshold:
        return (
            f"only {valid} participants would keep a valid attestation, fewer than the "
            f"threshold {serving.parameters.threshold}"
        )
    return None


def _vote(state: ContractState, ctx: CallContext, proposal: PolicyProposal) -> CallResult:
    att = _require_attestation(state)
    serving = require_initialized(state)
    account = ctx.predecessor
    if serving.parameters.get(account) is None:
        raise NotParticipant(f"{account} is not a participant")
    require_operator(ctx)
    now = now_seconds(ctx)
    key = proposal.key()
    pending = att.proposals.get(key)
    if pending is not None and account in pending.voters:
        raise DuplicateVote(f"{account} already voted for this change")
    if proposal.action == "add" and proposal.measurement is not None:
        assert proposal.role is not None
        if att.is_allowed(proposal.role, proposal.measurement):
            raise InvalidArguments("the measurement is already on the allow-list")
    if proposal.action == "remove" and proposal.measurement is not None:
        assert proposal.role is not None
        if not att.is_allowed(proposal.role, proposal.measurement):
            raise InvalidArguments("the measurement is not on the allow-list")
    problem = _lockout_problem(state, att, proposal, now)
    if problem is not None:
        raise WouldLockOut(problem)
    if pending is None:
        pending = proposal
        att.proposals[key] = pending
    pending.voters.add(account)
    votes = len(pending.voters & serving.parameters.accounts)
    required = serving.parameters.threshold
    events = [
        Event(
            ATTESTATION_POLICY_VOTED,
            {**pending.content_json(), "account": account, "votes": votes, "required": required},
        )
    ]
    applied = votes >= required
    if applied:
        del att.proposals[key]
        if pending.action == "add":
            assert pending.role is not None and pending.measurement is not None
            att.allowed.setdefault(pending.role, {})[pending.measurement.measurement_id] = (
                pending.measurement
            )
        elif pending.action == "remove":
            assert pending.role is not None and pending.measurement is not None
            del att.allowed[pending.role][pending.measurement.measurement_id]
        else:
            assert pending.policy is not None
            att.tcb_policy = pending.policy
        events.append(Event(ATTESTATION_POLICY_CHANGED, pending.content_json()))
    return CallResult({"votes": votes, "required": required, "applied": applied}, events)


def vote_measurement(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["action", "role", "measurement"])
    if args["action"] not in ("add", "remove"):
        raise InvalidArguments("action must be add or remove")
    role = expect_role(args["role"], "role")
    measurement = expect_measurement(args["measurement"], "measurement")
    return _vote(state, ctx, PolicyProposal(args["action"], role, measurement, None))


def vote_tcb_policy(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["policy"])
    policy = expect_tcb_policy(args["policy"], "policy")
    return _vote(state, ctx, PolicyProposal("tcb_policy", None, None, policy))


def verify_attestations(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    """Anyone: mark failing participants; reshare them out if the rest meet the threshold."""
    check_fields(args, "args", [])
    att = _require_attestation(state)
    serving = require_initialized(state)
    now = now_seconds(ctx)
    prune_records(state)
    problems = {
        m.account: p
        for m in serving.parameters.members
        if (p := participant_problem(att, m, now)) is not None
    }
    newly = sorted(set(problems) - set(att.marked))
    cleared = sorted(set(att.marked) - set(problems))
    att.marked = dict(sorted(problems.items()))
    resharing: dict[str, Any] | None = None
    reason = None
    events_resharing: list[Event] = []
    if problems and isinstance(state.protocol, Running):
        running = require_running(state)
        remaining = tuple(m for m in running.parameters.members if m.account not in problems)
        n = len(remaining)
        threshold = max(min_resharing_threshold(n), min(running.parameters.threshold, n))
        if n < running.parameters.threshold:
            reason = (
                f"only {n} participants have a valid attestation, fewer than the threshold "
                f"{running.parameters.threshold}: no resharing, the operators must act"
            )
        elif threshold_problem(threshold, n, resharing=True) is not None:
            reason = f"{n} remaining participants cannot form a set"
        else:
            # resharing.py imports this module for its own checks: import at call time.
            from quorumkeep.contract.resharing import _start_resharing

            proposal = Participants(threshold, remaining)
            resharing = {"epoch": running.next_epoch, **proposal.to_json()}
            events_resharing = _start_resharing(state, running, proposal, running.next_epoch)
    elif problems:
        reason = f"the protocol is {state.protocol.name}; a resharing starts only from Running"
    value = {
        "marked": att.marked,
        "newly_marked": newly,
        "cleared": cleared,
        "resharing": resharing,
        "reason": reason,
    }
    events = [Event(ATTESTATIONS_VERIFIED, {**value, "at": now}), *events_resharing]
    return CallResult(value, events)


def attestations_view(state: ContractState, args: dict[str, Any]) -> Any:
    """Everyone's attestation: participants, candidates, destinations, backup services, key
    providers.

    With ``at`` (Unix seconds) each entry also gets ``status`` ("valid", "pending" during
    the genesis grace time, or the problem) and ``expires_in`` seconds.
    """
    check_fields(args, "args", [], ["at"])
    at = expect_int(args["at"], "at") if "at" in args else None
    att = state.attestation
    if att is None:
        return {"enforced": False, "insecure": True, "entries": []}

    def entry(
        role: str, account: str, key: bytes, what: str, participant: ParticipantInfo | None
    ) -> dict[str, Any]:
        record = att.records.get(key)
        item: dict[str, Any] = {
            "role": role,
            "account": account,
            "what": what,
            "key": key.hex(),
            "marked": att.marked.get(account) if what == "participant" else None,
            "record": None if record is None else record.to_json(),
        }
        if at is not None:
            if participant is not None:
                problem = participant_problem(att, participant, at)
                pending = record is None and problem is None
            else:
                problem = record_problem(att, record, role, at)
                pending = False
            item["status"] = "pending" if pending else (problem or "valid")
            item["expires_in"] = None if record is None else record.expires_at - at
        return item

    entries = []
    serving = state.serving()
    if serving is not None:
        for m in serving.parameters.members:
            entries.append(entry("node", m.account, m.tls_public_key, "participant", m))
    for account, c in sorted(state.candidates.items()):
        entries.append(entry("node", account, c.tls_public_key, "candidate", None))
    for account, mig in sorted(state.migrations.items()):
        entries.append(
            entry("node", account, mig.destination.tls_public_key, "migration_destination", None)
        )
    for account, b in sorted(state.backup_services.items()):
        entries.append(
            entry("backup_service", account, b.identity_public_key, "backup_service", None)
        )
    for account, p in sorted(state.key_providers.providers.items()):
        entries.append(entry("key_provider", account, p.identity_public_key, "key_provider", None))
    return {
        "enforced": True,
        "insecure": att.dev_allowed,
        "insecure_dev_attestation": att.dev_allowed,
        "validity_seconds": att.validity_seconds,
        "require_tee_backup_services": att.require_tee_backup_services,
        "tcb_policy": att.tcb_policy.to_json(),
        "entries": entries,
    }


def attestation_policy_view(state: ContractState, args: dict[str, Any]) -> Any:
    """The attestation section of the state (allow-lists, policy, pending votes, marks)."""
    check_fields(args, "args", [])
    if state.attestation is None:
        return None
    data = state.attestation.to_json()
    del data["records"]
    return data
