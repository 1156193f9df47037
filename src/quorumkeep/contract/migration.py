"""Backup services and node migrations.

A migration moves one participant's node to a new machine without a resharing: the
operator names the destination, the backup service hands it the shares, and the
destination node concludes by proving it holds the destination signer key and knows the
current keyset. Only while Running; any protocol state change cancels open migrations,
so a migration can never stall a resharing or key generation.
"""

from __future__ import annotations

from typing import Any

from quorumkeep.contract.access import (
    require_initialized,
    require_operator,
    require_participant,
    require_running,
)
from quorumkeep.contract.args import (
    check_fields,
    expect_account,
    expect_ed25519_key,
    expect_host_port,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    expect_web_url,
)
from quorumkeep.contract.attestation import (
    backup_service_evidence,
    node_evidence,
    require_valid_node,
    store_record,
)
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    InvalidArguments,
    KeyInUse,
    KeysetMismatch,
    MigrationNotFound,
    NotParticipant,
    SignerKeyMismatch,
)
from quorumkeep.contract.events import (
    BACKUP_SERVICE_REGISTERED,
    MIGRATION_CANCELLED,
    MIGRATION_CONCLUDED,
    MIGRATION_STARTED,
    Event,
    participants_changed,
)
from quorumkeep.contract.rules import key_clash
from quorumkeep.contract.state import (
    MAX_DOMAINS,
    BackupServiceInfo,
    ContractState,
    Destination,
    Keyset,
    Migration,
    ParticipantInfo,
    Resharing,
    Running,
)


def current_accounts(state: ContractState) -> set[str]:
    """Accounts that are participants now (in a Resharing: of the old or the new set)."""
    serving = state.serving()
    if serving is None:
        return set()
    accounts = set(serving.parameters.accounts)
    if isinstance(state.protocol, Resharing):
        accounts |= state.protocol.parameters.accounts
    return accounts


def prospective_accounts(state: ContractState) -> set[str]:
    """Accounts that may become participants: in an open proposal or on the candidate list."""
    accounts = set(state.candidates)
    if isinstance(state.protocol, Running):
        for proposal in state.protocol.parameters_votes.values():
            accounts |= proposal.accounts
    return accounts


def cancel_all_migrations(state: ContractState, reason: str) -> list[Event]:
    events = [
        Event(
            MIGRATION_CANCELLED,
            {"account": m.account, "participant_id": m.participant_id, "reason": reason},
        )
        for _, m in sorted(state.migrations.items())
    ]
    state.migrations.clear()
    return events


def register_backup_service(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    evidence = args.get("attestation")
    info = BackupServiceInfo.from_json(
        {k: v for k, v in args.items() if k != "attestation"}, "args"
    )
    require_initialized(state)
    account = ctx.predecessor
    if account not in current_accounts(state) and account not in prospective_accounts(state):
        raise NotParticipant(f"{account} is neither a participant nor a prospective one")
    require_operator(ctx)
    record = backup_service_evidence(
        state, ctx, info.identity_public_key, info.encryption_public_key, evidence
    )
    replaced = account in state.backup_services
    state.backup_services[account] = info
    data = {"account": account, **info.to_json(), "replaced": replaced}
    events = [Event(BACKUP_SERVICE_REGISTERED, data)]
    if record is not None:
        events.append(store_record(state, record))
    return CallResult(None, events)


def _parse_destination(args: dict[str, Any]) -> tuple[dict[str, Any], Destination, bytes]:
    check_fields(args, "args", ["destination"], ["destination_signer_public_key"])
    obj = expect_object(args["destination"], "destination")
    check_fields(
        obj,
        "destination",
        ["url", "web_url", "tls_public_key"],
        ["account", "participant_id", "signer_public_key"],
    )
    destination = Destination(
        expect_host_port(obj["url"], "destination.url"),
        expect_web_url(obj["web_url"], "destination.web_url"),
        expect_ed25519_key(obj["tls_public_key"], "destination.tls_public_key"),
    )
    # A node prints its full participant info; accepting it as-is spares operators an edit.
    signer = None
    if "destination_signer_public_key" in args:
        signer = expect_ed25519_key(
            args["destination_signer_public_key"], "destination_signer_public_key"
        )
    if "signer_public_key" in obj:
        inner = expect_ed25519_key(obj["signer_public_key"], "destination.signer_public_key")
        if signer is not None and inner != signer:
            raise InvalidArguments(
                "destination.signer_public_key differs from destination_signer_public_key"
            )
        signer = inner
    if signer is None:
        raise InvalidArguments("destination_signer_public_key is required")
    if "account" in obj:
        expect_account(obj["account"], "destination.account")
    if "participant_id" in obj:
        expect_int(obj["participant_id"], "destination.participant_id", 1)
    return obj, destination, signer


def start_node_migration(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    obj, destination, signer = _parse_destination(args)
    running = require_running(state)
    account = ctx.predecessor
    info = require_participant(running.parameters, account, "a participant")
    require_operator(ctx)
    if obj.get("account", account) != account:
        raise InvalidArguments(f"destination.account must be {account}")
    if obj.get("participant_id", info.participant_id) != info.participant_id:
        raise InvalidArguments(f"destination.participant_id must be {info.participant_id}")
    if destination.tls_public_key == info.tls_public_key:
        raise KeyInUse("the destination TLS key is the current node's; a migration needs a new one")
    if signer == info.signer_public_key:
        raise KeyInUse("the destination signer key is the current node's; use a new signer key")
    clash = key_clash(info, destination.tls_public_key, signer, running.parameters.members)
    if clash is not None:
        raise KeyInUse(clash)
    for other in running.parameters.members:
        if other.account != account and other.url == destination.url:
            raise KeyInUse(f"the destination url is already used by {other.account}")
    for other_account, m in state.migrations.items():
        if other_account == account:
            continue
        if m.destination.tls_public_key == destination.tls_public_key:
            raise KeyInUse(f"the TLS key is the destination of {other_account}'s migration")
        if m.destination_signer_public_key == signer:
            raise KeyInUse(f"the signer key is the destination of {other_account}'s migration")
    replaced = account in state.migrations
    migration = Migration(account, info.participant_id, destination, signer, ctx.block_height)
    state.migrations[account] = migration
    data = {**migration.to_json(), "replaced": replaced}
    return CallResult(migration.to_json(), [Event(MIGRATION_STARTED, data)])


def _parse_keyset(value: Any) -> tuple[int, dict[int, tuple[bytes, str | None]]]:
    obj = expect_object(value, "keyset")
    check_fields(obj, "keyset", ["epoch", "domains"])
    epoch = expect_int(obj["epoch"], "keyset.epoch")
    domains: dict[int, tuple[bytes, str | None]] = {}
    for i, item in enumerate(expect_list(obj["domains"], "keyset.domains", 0, MAX_DOMAINS)):
        name = f"keyset.domains[{i}]"
        d = expect_object(item, name)
        check_fields(d, name, ["domain_id", "public_key"], ["scheme"])
        domain_id = expect_int(d["domain_id"], f"{name}.domain_id")
        if domain_id in domains:
            raise InvalidArguments(f"keyset lists domain {domain_id} twice")
        scheme = expect_str(d["scheme"], f"{name}.scheme", 32) if "scheme" in d else None
        domains[domain_id] = (expect_ed25519_key(d["public_key"], f"{name}.public_key"), scheme)
    return epoch, domains


def keyset_problem(
    keyset: Keyset, epoch: int, domains: dict[int, tuple[bytes, str | None]]
) -> str | None:
    if epoch != keyset.epoch:
        return f"the keyset's epoch is {epoch}, the current epoch is {keyset.epoch}"
    if sorted(domains) != [d.domain_id for d in keyset.domains]:
        return "the keyset does not list exactly the current domains"
    for d in keyset.domains:
        public_key, scheme = domains[d.domain_id]
        if public_key != d.public_key:
            return f"the public key of domain {d.domain_id} differs from the current one"
        if scheme is not None and scheme != d.scheme:
            return f"the scheme of domain {d.domain_id} differs from the current one"
    return None


def conclude_node_migration(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    check_fields(args, "args", ["keyset"], ["attestation"])
    epoch, domains = _parse_keyset(args["keyset"])
    running = require_running(state)
    account = ctx.predecessor
    info = require_participant(running.parameters, account, "a participant")
    migration = state.migrations.get(account)
    if migration is None:
        raise MigrationNotFound(f"no migration is open for {account}")
    if ctx.signer_public_key != migration.destination_signer_public_key:
        raise SignerKeyMismatch("only the migration's destination signer key may conclude it")
    problem = keyset_problem(running.keyset, epoch, domains)
    if problem is not None:
        raise KeysetMismatch(problem)
    destination = ParticipantInfo(
        account,
        info.participant_id,
        migration.destination.url,
        migration.destination.web_url,
        migration.destination.tls_public_key,
        migration.destination_signer_public_key,
    )
    record = None
    if "attestation" in args:
        record = node_evidence(state, ctx, destination, args["attestation"])
    elif state.attestation is not None:
        require_valid_node(
            state, ctx, destination.tls_public_key, "the migration's destination node"
        )
    new_info = ParticipantInfo(
        account=account,
        participant_id=info.participant_id,
        url=migration.destination.url,
        web_url=migration.destination.web_url,
        tls_public_key=migration.destination.tls_public_key,
        signer_public_key=migration.destination_signer_public_key,
    )
    running.parameters = running.parameters.replace_member(new_info)
    del state.migrations[account]
    events = [
        Event(
            MIGRATION_CONCLUDED,
            {
                "account": account,
                "participant_id": info.participant_id,
                "previous": info.to_json(),
                "participant": new_info.to_json(),
            },
        ),
        participants_changed(running.epoch, running.parameters.to_json(), "migration"),
    ]
    if record is not None:
        events.append(store_record(state, record))
    return CallResult(new_info.to_json(), events)


def cancel_node_migration(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    check_fields(args, "args", [])
    require_initialized(state)
    require_operator(ctx)
    migration = state.migrations.pop(ctx.predecessor, None)
    if migration is None:
        raise MigrationNotFound(f"no migration is open for {ctx.predecessor}")
    data = {
        "account": migration.account,
        "participant_id": migration.participant_id,
        "reason": "cancelled by the operator",
    }
    return CallResult(None, [Event(MIGRATION_CANCELLED, data)])
