"""The operator's contract calls for its node: register the backup service, start and
cancel a migration, vote the emergency recovery key. Each is one function taking a ledger
client and the operator's full-access key, raising :class:`OperatorError` with one line on
anything refused.

``start_migration`` does everything an operator needs for a new machine in one step: it
gives the new node's signer key its function-call access key (the node methods only) if
the account does not have it yet — without it the node could not conclude — and then
calls ``start_node_migration`` with the node's info.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract import NODE_METHODS
from quorumkeep.crypto.pve import RecoveryPublicKey
from quorumkeep.ledger.client import AccountSigner, LedgerClient, TxOutcome
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.ledger.transaction import Permission
from quorumkeep.operator.errors import OperatorError
from quorumkeep.operator.inputs import BackupRegistration, NodeInfo


def node_permission() -> Permission:
    """A function-call key limited to the contract's node methods."""
    return Permission(tuple(sorted(NODE_METHODS)))


def _ledger_failure(what: str, exc: LedgerError) -> OperatorError:
    if isinstance(exc, ContractCallFailed):
        where = f" (block {exc.block_height})" if exc.block_height >= 0 else ""
        return OperatorError(exc.code, f"{what} rejected: {exc.code}: {exc.message}{where}")
    return OperatorError(exc.code, f"{what}: {exc.code}: {exc.message}")


def _call(
    client: LedgerClient, signer: AccountSigner, method: str, args: dict[str, Any]
) -> TxOutcome:
    try:
        return client.call(signer, method, args)
    except LedgerError as exc:
        raise _ledger_failure(method, exc) from None


def existing_key_permission(client: LedgerClient, account: str, public_key: bytes) -> Any:
    """The permission JSON of ``public_key`` on ``account``, or None if it is not a key."""
    try:
        body = client.account(account)
    except LedgerError as exc:
        raise _ledger_failure(f"reading account {account}", exc) from None
    for key in body.get("keys", []):
        if key.get("public_key") == public_key.hex():
            return key.get("permission")
    return None


def add_node_key(client: LedgerClient, signer: AccountSigner, info: NodeInfo) -> TxOutcome | None:
    """Give the node's signer key its node-methods access key: the outcome of ``add_key``,
    or None if the account already has exactly that key (a second run is a no-op)."""
    return _add_key(
        client, signer, info.signer_public_key, node_permission(), "the node's signer key"
    )


def ensure_node_key(client: LedgerClient, signer: AccountSigner, info: NodeInfo) -> str:
    """Give the node's signer key its node-methods access key; ``"added"`` or ``"exists"``."""
    return _ensure_key(
        client, signer, info.signer_public_key, node_permission(), "the node's signer key"
    )


def attestation_permission() -> Permission:
    """A backup service's identity key: it may only renew its own attestation."""
    return Permission(("submit_attestation",))


def _add_key(
    client: LedgerClient,
    signer: AccountSigner,
    public_key: bytes,
    permission: Permission,
    what: str,
) -> TxOutcome | None:
    """``add_key`` with ``permission``, or None if the account has exactly that key."""
    existing = existing_key_permission(client, signer.account, public_key)
    if existing is not None:
        if existing != permission.to_json():
            raise OperatorError(
                "key_permission_mismatch",
                f"{public_key.hex()} is already a key of {signer.account} with "
                "another permission; delete it first (`quorumkeep keys delete`)",
            )
        return None
    try:
        return client.add_key(signer, public_key, permission)
    except LedgerError as exc:
        raise _ledger_failure(f"adding {what}", exc) from None


def _ensure_key(
    client: LedgerClient,
    signer: AccountSigner,
    public_key: bytes,
    permission: Permission,
    what: str,
) -> str:
    """``"added"`` or ``"exists"``; a refusal other than a concurrent add is an error."""
    outcome = _add_key(client, signer, public_key, permission, what)
    if outcome is None:
        return "exists"
    if not outcome.ok and outcome.error_code != "AccessKeyExists":
        raise OperatorError(
            outcome.error_code or "add_key_failed",
            f"adding {what}: {outcome.error_code}: {outcome.error_message}",
        )
    return "added"


def _check_account(signer: AccountSigner, account: str | None, what: str) -> None:
    if account is not None and account != signer.account:
        raise OperatorError(
            "account_mismatch", f"{what} is for account {account!r}, not {signer.account!r}"
        )


def register_backup_service(
    client: LedgerClient, signer: AccountSigner, registration: BackupRegistration
) -> TxOutcome:
    """``register_backup_service`` with the service's public keys (replaces any earlier one).

    A service that attests also gets its identity key as an access key limited to
    ``submit_attestation``, so it renews its attestation by itself (docs/attestation.md)."""
    _check_account(signer, registration.account, "the backup service")
    outcome = _call(client, signer, "register_backup_service", registration.to_json())
    if registration.attestation is not None:
        ensure_attestation_key(client, signer, registration.identity_public_key)
    return outcome


def ensure_attestation_key(
    client: LedgerClient, signer: AccountSigner, identity_public_key: bytes
) -> str:
    """The backup service's identity key as a ``submit_attestation``-only access key."""
    return _ensure_key(
        client,
        signer,
        identity_public_key,
        attestation_permission(),
        "the backup service's identity key",
    )


def vote_recovery_key(
    client: LedgerClient, signer: AccountSigner, domain_id: int, public: RecoveryPublicKey
) -> TxOutcome:
    """``vote_recovery_key``: this operator's vote for the domain's offline recovery key."""
    args = {
        "domain_id": domain_id,
        "public_key": public.spki_der.hex(),
        "fingerprint": public.fingerprint.hex(),
    }
    return _call(client, signer, "vote_recovery_key", args)


@dataclass(frozen=True)
class StartedMigration:
    """What ``start_migration`` did: the node key step, the transaction, the migration."""

    node_key: str
    """``"added"`` or ``"exists"``."""
    outcome: TxOutcome
    migration: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def started_height(self) -> int:
        return int(self.migration["started_height"])

    def to_json(self) -> dict[str, Any]:
        return {
            "node_key": self.node_key,
            "tx_hash": self.outcome.tx_hash,
            "block_height": self.outcome.block_height,
            "migration": self.migration,
            "warnings": list(self.warnings),
        }


def migration_preflight(client: LedgerClient, account: str, info: NodeInfo) -> list[str]:
    """Problems the contract would not catch but that would stall the migration."""
    warnings = []
    try:
        backup = client.view("backup_service_info", {"account": account})
    except LedgerError as exc:
        raise _ledger_failure("reading backup_service_info", exc) from None
    if backup is None:
        warnings.append(
            f"no backup service is registered for {account}: nothing will push the shares to "
            "the new node (`quorumkeep operator register-backup-service`)"
        )
    return warnings


def start_migration(
    client: LedgerClient, signer: AccountSigner, info: NodeInfo
) -> StartedMigration:
    """Authorize the new node's signer key, then ``start_node_migration`` to it."""
    _check_account(signer, info.account, "the new node")
    warnings = migration_preflight(client, signer.account, info)
    node_key = ensure_node_key(client, signer, info)
    outcome = _call(
        client,
        signer,
        "start_node_migration",
        {
            "destination": info.destination(),
            "destination_signer_public_key": info.signer_public_key.hex(),
        },
    )
    migration = dict(outcome.value) if isinstance(outcome.value, dict) else {}
    migration.setdefault("started_height", outcome.block_height)
    return StartedMigration(node_key, outcome, migration, warnings)


def cancel_migration(client: LedgerClient, signer: AccountSigner) -> TxOutcome:
    """``cancel_node_migration``: the open migration of the operator's account ends."""
    return _call(client, signer, "cancel_node_migration", {})
