"""Readers of single JSON and header values: each returns the decoded value or raises
``malformed_request`` naming the field, never its value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import element_decode
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, decode_hex, is_account_name, key_diff
from quorumkeep.encoding.json import JsonError, parse_json
from quorumkeep.wire.backup.errors import malformed
from quorumkeep.wire.backup.protocol import (
    KEY_SIZE,
    MAX_BODY_BYTES,
    MAX_ID,
    NONCE_SIZE,
    SESSION_ID_SIZE,
    SIGNATURE_SIZE,
    Purpose,
)

# --- field helpers --------------------------------------------------------------------------


def read_int(value: object, what: str, minimum: int = 0, maximum: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise malformed(f"{what}: expected an integer in [{minimum}, {maximum}]")
    return value


def read_hex(
    value: object, what: str, size: int | None = None, maximum: int | None = None
) -> bytes:
    try:
        data = decode_hex(value)
    except ValueError:
        raise malformed(f"{what}: expected lowercase hex") from None
    if size is not None and len(data) != size:
        raise malformed(f"{what}: expected {size} bytes, got {len(data)}")
    if maximum is not None and len(data) > maximum:
        raise malformed(f"{what}: longer than {maximum} bytes")
    return data


def read_account(value: object, what: str = "account") -> str:
    if not is_account_name(value):
        raise malformed(f"{what}: expected an account name matching {ACCOUNT_PATTERN.pattern}")
    return value


def read_json(body: bytes, refusal: str) -> object:
    """A JSON body or plaintext, strictly parsed (``quorumkeep.encoding.json``): too deep,
    duplicate keys, NaN, not UTF-8 or not JSON are all ``malformed_request`` (``refusal``
    is its message)."""
    try:
        return parse_json(body)
    except JsonError:
        raise malformed(refusal) from None


def read_object(value: object, what: str, required: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise malformed(f"{what}: expected a JSON object")
    missing, extra = key_diff(value, sorted(set(required)))
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing)}")
        if extra:
            detail.append(f"unknown {', '.join(extra)}")
        raise malformed(f"{what}: {'; '.join(detail)}")
    return value


def read_ed25519_key(value: object, what: str) -> bytes:
    data = read_hex(value, what, KEY_SIZE)
    try:
        element_decode(data)
    except InvalidEncoding:
        raise malformed(f"{what}: not a valid ed25519 public key") from None
    return data


def read_x25519_key(value: object, what: str) -> bytes:
    data = read_hex(value, what, KEY_SIZE)
    if data == bytes(KEY_SIZE):
        raise malformed(f"{what}: the all-zero X25519 key is not a key")
    return data


def read_purpose(value: object, what: str) -> Purpose:
    if value == "backup":
        return "backup"
    if value == "recovery":
        return "recovery"
    raise malformed(f"{what}: expected backup or recovery")


def read_registered_key(value: object, what: str) -> bytes:
    """A TLS, identity or encryption key: only its size is checked here, because each one is
    compared with the key the contract registers before it is used."""
    return read_hex(value, what, KEY_SIZE)


def read_nonce(value: object, what: str) -> bytes:
    return read_hex(value, what, NONCE_SIZE)


def read_session_id(value: object, what: str) -> bytes:
    return read_hex(value, what, SESSION_ID_SIZE)


def read_keyset_hash(value: object, what: str) -> bytes:
    return read_hex(value, what, 32)


def read_ciphertext(value: object, what: str) -> bytes:
    return read_hex(value, what, maximum=MAX_BODY_BYTES)


def read_signature(value: object, what: str) -> bytes:
    return read_hex(value, what, SIGNATURE_SIZE)
