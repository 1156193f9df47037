"""Access-key permissions without a process: which methods a function-call key may hold
and call (a node's signer key, a backup service's identity key)."""

from __future__ import annotations

import pytest

from quorumkeep.ledger.accounts import AccessKey, Accounts, check_permission_methods
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.transaction import FunctionCall, Permission
from quorumkeep.operator.actions import backup_permission, node_permission

OPERATOR = b"\x01" * 32


def test_a_backup_service_key_is_limited_to_its_methods() -> None:
    assert backup_permission() == Permission(("confirm_backup", "submit_attestation"))
    check_permission_methods(backup_permission())
    accounts = Accounts.genesis({"alice": [OPERATOR]})
    key = AccessKey(backup_permission())
    accounts.authorize("alice", key, [FunctionCall("confirm_backup", {})])
    accounts.authorize("alice", key, [FunctionCall("submit_attestation", {})])
    for method in ("sign", "vote_pk", "respond"):
        with pytest.raises(LedgerError) as refused:
            accounts.authorize("alice", key, [FunctionCall(method, {})])
        assert refused.value.code == "KeyMethodNotAllowed"
    with pytest.raises(LedgerError) as refused:
        accounts.authorize("alice", key, [FunctionCall("register_backup_service", {})])
    assert refused.value.code == "FullAccessRequired"


def test_a_node_key_may_not_confirm_backups() -> None:
    accounts = Accounts.genesis({"alice": [OPERATOR]})
    with pytest.raises(LedgerError) as refused:
        accounts.authorize(
            "alice", AccessKey(node_permission()), [FunctionCall("confirm_backup", {})]
        )
    assert refused.value.code == "KeyMethodNotAllowed"


@pytest.mark.parametrize("methods", [("confirm_backup", "init"), ("register_backup_service",)])
def test_a_permission_may_not_list_operator_methods(methods: tuple[str, ...]) -> None:
    with pytest.raises(LedgerError) as refused:
        check_permission_methods(Permission(methods))
    assert refused.value.code == "InvalidPermission"
