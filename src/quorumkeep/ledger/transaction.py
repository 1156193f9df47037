"""Transactions: what an account asks the ledger to do, signed by one of its access keys.

Signed message (docs/ledger.md, "Transactions"):

    signing_bytes = b"quorumkeep-tx-v1\\x00" || canonical_json(transaction.to_json())
    signature     = Ed25519(access key, signing_bytes)          (64 bytes)
    tx_hash       = SHA-256(signing_bytes)                       (32 bytes)

The hash covers exactly what is signed, so it names a transaction independently of its
(deterministic) signature, and replay detection by hash cannot be dodged by re-signing.
The chain id (the genesis block hash) is signed too: a transaction is valid on one ledger.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing

from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import element_decode
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.encoding.fields import decode_hex as hex_field
from quorumkeep.ledger.canonical import MAX_SAFE_INTEGER, NotCanonical, canonical_json, check_ijson
from quorumkeep.ledger.errors import LedgerError

TX_DOMAIN = b"quorumkeep-tx-v1\x00"
MAX_ACTIONS = 16
MAX_PERMISSION_METHODS = 64

METHOD_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _invalid(message: str) -> LedgerError:
    return LedgerError("InvalidTransaction", message)


def check_account(name: object, what: str = "signer_account") -> str:
    if not is_account_name(name):
        raise _invalid(f"{what} must be an account name matching {ACCOUNT_PATTERN.pattern}")
    return name


def check_method(name: object, what: str = "method") -> str:
    if not isinstance(name, str) or not METHOD_RE.match(name):
        raise _invalid(f"{what} must be a method name matching {METHOD_RE.pattern}")
    return name


def decode_hex(value: object, size: int, what: str) -> bytes:
    """Lowercase hex of exactly ``size`` bytes: one spelling per value, so equal keys compare."""
    try:
        return hex_field(value, size, size)
    except ValueError:
        raise _invalid(f"{what} must be {2 * size} lowercase hex characters") from None


def decode_public_key(value: object, what: str = "public_key") -> bytes:
    """An Ed25519 public key: canonical, in the prime-order subgroup, not small-order."""
    raw = decode_hex(value, 32, what)
    try:
        element_decode(raw)
    except InvalidEncoding:
        raise _invalid(f"{what} is not a valid Ed25519 public key") from None
    return raw


def _check_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{what} must be an integer")
    if not minimum <= value <= MAX_SAFE_INTEGER:
        raise _invalid(f"{what} must be in [{minimum}, 2^53 - 1]")
    return value


def _object(value: object, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be a JSON object")
    missing = keys - value.keys()
    extra = value.keys() - keys
    if missing:
        raise _invalid(f"{what} lacks {', '.join(sorted(missing))}")
    if extra:
        raise _invalid(f"{what} has unknown field {', '.join(sorted(extra))}")
    return value


# --- permissions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Permission:
    """Full access (``methods is None``) or a function-call key limited to ``methods``."""

    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Sorted and deduplicated: one encoding per permission, whatever order was typed.
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(sorted(set(self.methods))))

    @property
    def full_access(self) -> bool:
        return self.methods is None

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def to_json(self) -> Any:
        if self.methods is None:
            return "full"
        return {"function_call": list(self.methods)}

    @classmethod
    def from_json(cls, value: object) -> Permission:
        if value == "full":
            return FULL_ACCESS
        obj = _object(value, {"function_call"}, 'permission (or "full")')
        methods = obj["function_call"]
        if not isinstance(methods, list) or not methods:
            raise _invalid("permission.function_call must be a non-empty list of method names")
        if len(methods) > MAX_PERMISSION_METHODS:
            raise _invalid(f"permission.function_call lists more than {MAX_PERMISSION_METHODS}")
        checked = [check_method(m, "permission.function_call[]") for m in methods]
        if len(set(checked)) != len(checked):
            raise _invalid("permission.function_call lists a method twice")
        return cls(tuple(checked))


FULL_ACCESS = Permission()


# --- actions --------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionCall:
    """Call contract method ``method`` with keyword arguments ``args``."""

    method: str
    args: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"function_call": {"method": self.method, "args": self.args}}


@dataclass(frozen=True)
class AddKey:
    """Give the signing account another access key (needs a full-access key)."""

    public_key: bytes
    permission: Permission

    def to_json(self) -> dict[str, Any]:
        return {
            "add_key": {
                "public_key": self.public_key.hex(),
                "permission": self.permission.to_json(),
            }
        }


@dataclass(frozen=True)
class DeleteKey:
    """Remove one of the signing account's access keys (needs a full-access key)."""

    public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"delete_key": {"public_key": self.public_key.hex()}}


Action = FunctionCall | AddKey | DeleteKey


def action_from_json(value: object, where: str) -> Action:
    if not isinstance(value, dict) or len(value) != 1:
        raise _invalid(
            f"{where} must be an object with exactly one of function_call, add_key, delete_key"
        )
    ((kind, body),) = value.items()
    if kind == "function_call":
        obj = _object(body, {"method", "args"}, f"{where}.function_call")
        args = obj["args"]
        if not isinstance(args, dict):
            raise _invalid(f"{where}.function_call.args must be a JSON object")
        try:
            check_ijson(args, where=f"{where}.function_call.args")
        except NotCanonical as exc:
            raise _invalid(str(exc)) from None
        return FunctionCall(check_method(obj["method"], f"{where}.function_call.method"), args)
    if kind == "add_key":
        obj = _object(body, {"public_key", "permission"}, f"{where}.add_key")
        return AddKey(
            decode_public_key(obj["public_key"], f"{where}.add_key.public_key"),
            Permission.from_json(obj["permission"]),
        )
    if kind == "delete_key":
        obj = _object(body, {"public_key"}, f"{where}.delete_key")
        return DeleteKey(decode_public_key(obj["public_key"], f"{where}.delete_key.public_key"))
    raise _invalid(f"{where}: unknown action {kind!r}")


# --- transactions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    """The signed part of a transaction (docs/ledger.md lists every field's rule)."""

    chain_id: bytes
    signer_account: str
    public_key: bytes
    nonce: int
    block_height: int
    actions: tuple[Action, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id.hex(),
            "signer_account": self.signer_account,
            "public_key": self.public_key.hex(),
            "nonce": self.nonce,
            "block_height": self.block_height,
            "actions": [a.to_json() for a in self.actions],
        }

    def signing_bytes(self) -> bytes:
        return TX_DOMAIN + canonical_json(self.to_json())

    def hash(self) -> bytes:
        return hashlib.sha256(self.signing_bytes()).digest()

    @property
    def function_call(self) -> FunctionCall | None:
        for action in self.actions:
            if isinstance(action, FunctionCall):
                return action
        return None

    def sign(self, signing_key: nacl.signing.SigningKey) -> SignedTransaction:
        if bytes(signing_key.verify_key) != self.public_key:
            raise ValueError("signing key does not match the transaction's public_key")
        message = self.signing_bytes()
        signature = signing_key.sign(message).signature
        return SignedTransaction(self, bytes(signature), message)

    @classmethod
    def from_json(cls, value: object) -> Transaction:
        obj = _object(
            value,
            {"chain_id", "signer_account", "public_key", "nonce", "block_height", "actions"},
            "transaction",
        )
        actions = obj["actions"]
        if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_ACTIONS:
            raise _invalid(f"transaction.actions must be a list of 1 to {MAX_ACTIONS} actions")
        parsed = tuple(action_from_json(a, f"actions[{i}]") for i, a in enumerate(actions))
        if sum(isinstance(a, FunctionCall) for a in parsed) > 1:
            # One call per transaction keeps a transaction atomic without snapshotting the
            # contract: key changes are applied only after the call succeeded.
            raise _invalid("a transaction holds at most one function_call")
        return cls(
            chain_id=decode_hex(obj["chain_id"], 32, "chain_id"),
            signer_account=check_account(obj["signer_account"]),
            public_key=decode_hex(obj["public_key"], 32, "public_key"),
            nonce=_check_int(obj["nonce"], "nonce", 1),
            block_height=_check_int(obj["block_height"], "block_height", 0),
            actions=parsed,
        )


@dataclass(frozen=True)
class SignedTransaction:
    """A transaction with its signature; ``message`` is the exact signed byte string."""

    transaction: Transaction
    signature: bytes
    message: bytes

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.message).digest()

    def to_json(self) -> dict[str, Any]:
        return {"transaction": self.transaction.to_json(), "signature": self.signature.hex()}

    def verify(self) -> None:
        """Raise LedgerError(InvalidSignature) unless the signature is the key's over message."""
        try:
            nacl.signing.VerifyKey(self.transaction.public_key).verify(self.message, self.signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
            raise LedgerError(
                "InvalidSignature", "signature does not verify under the transaction's public_key"
            ) from None

    @classmethod
    def from_json(cls, value: object) -> SignedTransaction:
        """Parse (without verifying) a ``{"transaction": ..., "signature": hex}`` object."""
        obj = _object(value, {"transaction", "signature"}, "signed transaction")
        tx = Transaction.from_json(obj["transaction"])
        signature = decode_hex(obj["signature"], 64, "signature")
        return cls(tx, signature, tx.signing_bytes())
