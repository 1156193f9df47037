"""Read-only queries. Each returns fresh JSON values; none changes the state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quorumkeep.contract.access import require_initialized
from quorumkeep.contract.args import check_fields, expect_account, expect_int, expect_str
from quorumkeep.contract.attestation import attestation_policy_view, attestations_view
from quorumkeep.contract.backup_gate import backup_status
from quorumkeep.contract.errors import DomainNotFound, InvalidArguments, RequestNotFound
from quorumkeep.contract.key_providers import key_provider_deal_view, key_providers_view
from quorumkeep.contract.records import verifying_shares_json
from quorumkeep.contract.state import PATH_MAX, ContractState, Resharing, candidate_json
from quorumkeep.crypto.derive import derive_public_key

View = Callable[[ContractState, dict[str, Any]], Any]


def state_view(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", [])
    return state.to_json()


def migration_info(state: ContractState, args: dict[str, Any]) -> Any:
    """Every open migration by account, or with ``account`` that one migration (or null)."""
    check_fields(args, "args", [], ["account"])
    if "account" in args:
        migration = state.migrations.get(expect_account(args["account"], "account"))
        return None if migration is None else migration.to_json()
    return {a: m.to_json() for a, m in sorted(state.migrations.items())}


def backup_service_info(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", ["account"])
    info = state.backup_services.get(expect_account(args["account"], "account"))
    return None if info is None else info.to_json()


def pending_requests(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", [])
    return [r.to_json() for r in state.requests.values()]


def request(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", ["request_id"])
    request_id = expect_int(args["request_id"], "request_id")
    found = state.requests.get(request_id)
    if found is None:
        raise RequestNotFound(f"no sign request {request_id} is pending")
    return found.to_json()


def public_key(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", ["domain_id", "account", "path"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    account = expect_account(args["account"], "account")
    path = expect_str(args["path"], "path", PATH_MAX)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArguments("path must be valid Unicode text") from exc
    domain = require_initialized(state).keyset.get(domain_id)
    if domain is None:
        raise DomainNotFound(f"there is no domain {domain_id} with a key")
    return derive_public_key(domain.public_key, account, path).hex()


def public_key_package(state: ContractState, args: dict[str, Any]) -> Any:
    """The serving package of one domain: what backups, migrations and repairs check against.

    During a resharing it is the previous epoch's (the one still signing); the new set's
    shares replace it when the resharing completes.
    """
    check_fields(args, "args", ["domain_id"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    serving = require_initialized(state)
    domain = serving.keyset.get(domain_id)
    if domain is None:
        raise DomainNotFound(f"there is no domain {domain_id} with a key")
    return {
        "domain_id": domain.domain_id,
        "epoch": serving.epoch,
        "public_key": domain.public_key.hex(),
        "threshold": serving.parameters.threshold,
        "verifying_shares": verifying_shares_json(domain.verifying_shares),
    }


def participants(state: ContractState, args: dict[str, Any]) -> Any:
    """The signing set; during a resharing also the set being built (``next``)."""
    check_fields(args, "args", [])
    serving = require_initialized(state)
    following = None
    if isinstance(state.protocol, Resharing):
        following = {"epoch": state.protocol.epoch, **state.protocol.parameters.to_json()}
    return {
        "protocol_state": state.protocol.name,
        "epoch": serving.epoch,
        **serving.parameters.to_json(),
        "next": following,
    }


def keyset(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", [])
    return require_initialized(state).keyset.to_json()


def candidates(state: ContractState, args: dict[str, Any]) -> Any:
    check_fields(args, "args", [])
    return {a: candidate_json(c) for a, c in sorted(state.candidates.items())}


def recovery_key(state: ContractState, args: dict[str, Any]) -> Any:
    """The domain's recovery key in force (or null) and the open votes for one."""
    check_fields(args, "args", ["domain_id"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    key = state.recovery.keys.get(domain_id)
    votes = state.recovery.votes.get(domain_id, {})
    return {
        "domain_id": domain_id,
        "key": None if key is None else key.to_json(),
        "votes": {a: k.fingerprint.hex() for a, k in sorted(votes.items())},
    }


def recovery_parts(state: ContractState, args: dict[str, Any]) -> Any:
    """The records of one (domain, epoch) (default: the epoch in force), or null: the
    package the parts were checked against, each part's digest and block height, and
    whether t parts under the key in force are recorded (``complete``)."""
    check_fields(args, "args", ["domain_id"], ["epoch"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    epoch = (
        expect_int(args["epoch"], "epoch") if "epoch" in args else require_initialized(state).epoch
    )
    record = state.recovery.epochs.get((domain_id, epoch))
    if record is None:
        return None
    key = state.recovery.keys.get(domain_id)
    current = (
        0
        if key is None
        else sum(1 for p in record.parts.values() if p.fingerprint == key.fingerprint)
    )
    return {
        **record.to_json(),
        "recovery_key": None if key is None else key.to_json(),
        "complete": current >= record.threshold,
    }


VIEWS: dict[str, View] = {
    "state": state_view,
    "migration_info": migration_info,
    "backup_service_info": backup_service_info,
    "pending_requests": pending_requests,
    "request": request,
    "public_key": public_key,
    "public_key_package": public_key_package,
    "participants": participants,
    "keyset": keyset,
    "candidates": candidates,
    "attestations": attestations_view,
    "attestation_policy": attestation_policy_view,
    "recovery_key": recovery_key,
    "recovery_parts": recovery_parts,
    "backup_status": backup_status,
    "key_providers": key_providers_view,
    "key_provider_deal": key_provider_deal_view,
}
