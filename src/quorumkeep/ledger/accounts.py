"""Accounts and their access keys: who may sign what.

An account is created in genesis and holds one or more Ed25519 access keys. A full-access key
(an operator's) may do anything; a function-call key (a node's signer key, a backup service's
identity key) may only call the contract methods listed in its permission, which must all be
node or backup service methods (``quorumkeep.contract.FUNCTION_CALL_METHODS``) — an
operator-only method (``METHODS[m].full_access_only``) always needs a full-access key. Every
key has its own nonce, which only grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quorumkeep.contract import FUNCTION_CALL_METHODS, METHODS
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.transaction import (
    FULL_ACCESS,
    Action,
    AddKey,
    DeleteKey,
    FunctionCall,
    Permission,
    check_account,
    decode_public_key,
)


@dataclass
class AccessKey:
    permission: Permission
    nonce: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"permission": self.permission.to_json(), "nonce": self.nonce}


def check_permission_methods(permission: Permission) -> None:
    """A function-call permission may only list existing, non-operator methods meant for
    function-call keys: the node methods and the backup service's ``confirm_backup``."""
    if permission.methods is None:
        return
    for method in permission.methods:
        if method not in METHODS:
            raise LedgerError("InvalidPermission", f"{method!r} is not a contract method")
        if method not in FUNCTION_CALL_METHODS or METHODS[method].full_access_only:
            raise LedgerError(
                "InvalidPermission",
                f"{method!r} is not a node or backup service method; a function-call key "
                "cannot be allowed it",
            )


class Accounts:
    """Every account's access keys; mutated only through ``apply_key_actions``/``use_nonce``."""

    def __init__(self, accounts: Mapping[str, Mapping[bytes, AccessKey]] | None = None) -> None:
        self._accounts: dict[str, dict[bytes, AccessKey]] = {
            name: dict(keys) for name, keys in (accounts or {}).items()
        }

    # --- genesis and persistence -------------------------------------------------------

    @classmethod
    def genesis(cls, full_access_keys: Mapping[str, Iterable[bytes]]) -> Accounts:
        accounts: dict[str, dict[bytes, AccessKey]] = {}
        for name, keys in full_access_keys.items():
            check_account(name, "account")
            accounts[name] = {pk: AccessKey(FULL_ACCESS) for pk in keys}
            if not accounts[name]:
                raise LedgerError("InvalidRequest", f"account {name!r} needs at least one key")
        return cls(accounts)

    def to_json(self) -> dict[str, Any]:
        return {
            name: {"keys": {pk.hex(): key.to_json() for pk, key in sorted(keys.items())}}
            for name, keys in sorted(self._accounts.items())
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Accounts:
        accounts: dict[str, dict[bytes, AccessKey]] = {}
        for name, body in value.items():
            check_account(name, "account")
            accounts[name] = {
                decode_public_key(pk): AccessKey(
                    Permission.from_json(key["permission"]), int(key.get("nonce", 0))
                )
                for pk, key in body["keys"].items()
            }
        return cls(accounts)

    # --- reads ---------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._accounts

    def names(self) -> list[str]:
        return sorted(self._accounts)

    def keys_of(self, account: str) -> dict[bytes, AccessKey]:
        try:
            return self._accounts[account]
        except KeyError:
            raise LedgerError("UnknownAccount", f"account {account!r} does not exist") from None

    def key(self, account: str, public_key: bytes) -> AccessKey:
        keys = self.keys_of(account)
        try:
            return keys[public_key]
        except KeyError:
            raise LedgerError(
                "UnknownAccessKey",
                f"{public_key.hex()} is not an access key of account {account!r}",
            ) from None

    # --- authorization -------------------------------------------------------------------

    def authorize(self, account: str, key: AccessKey, actions: Iterable[Action]) -> None:
        """Raise unless ``key`` of ``account`` may perform every action (state unchanged)."""
        working = dict(self.keys_of(account))
        for action in actions:
            if isinstance(action, FunctionCall):
                spec = METHODS.get(action.method)
                if spec is None:
                    raise LedgerError(
                        "UnknownMethod", f"{action.method!r} is not a contract method"
                    )
                if key.permission.full_access:
                    continue
                if spec.full_access_only:
                    raise LedgerError(
                        "FullAccessRequired",
                        f"{action.method!r} is an operator method and needs a full-access key",
                    )
                if not key.permission.allows(action.method):
                    raise LedgerError(
                        "KeyMethodNotAllowed",
                        f"this function-call key may not call {action.method!r}",
                    )
                continue
            if not key.permission.full_access:
                raise LedgerError(
                    "FullAccessRequired", "adding or deleting access keys needs a full-access key"
                )
            _apply_key_action(working, action)

    def apply_key_actions(self, account: str, actions: Iterable[Action]) -> None:
        """Apply already-authorized add/delete key actions."""
        keys = self.keys_of(account)
        for action in actions:
            if not isinstance(action, FunctionCall):
                _apply_key_action(keys, action)


def _apply_key_action(keys: dict[bytes, AccessKey], action: AddKey | DeleteKey) -> None:
    if isinstance(action, AddKey):
        if action.public_key in keys:
            raise LedgerError(
                "AccessKeyExists", f"{action.public_key.hex()} is already a key of this account"
            )
        check_permission_methods(action.permission)
        # A re-added key starts at nonce 0 again; old transactions signed by it stay refused
        # by the replay set (within the validity window) and by expiry (beyond it).
        keys[action.public_key] = AccessKey(action.permission)
        return
    existing = keys.get(action.public_key)
    if existing is None:
        raise LedgerError(
            "AccessKeyNotFound", f"{action.public_key.hex()} is not a key of this account"
        )
    if (
        existing.permission.full_access
        and sum(k.permission.full_access for k in keys.values()) == 1
    ):
        raise LedgerError(
            "LastFullAccessKey", "refusing to delete the account's last full-access key"
        )
    del keys[action.public_key]
