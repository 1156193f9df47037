"""Signed statements (docs/backup-protocol.md §3) and the ed25519 keys that sign and verify them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import nacl.exceptions
import nacl.signing

from quorumkeep.encoding.fields import len32
from quorumkeep.wire.backup.errors import BackupProtocolError
from quorumkeep.wire.backup.protocol import KEY_SIZE, SIGNATURE_SIZE, STATEMENT_PREFIX


def encode_value(value: bytes | str | int) -> bytes:
    """How one statement field's value is written (docs/backup-protocol.md §3)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not statement values")
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("statement integers are non-negative")
        return str(value).encode("ascii")
    raise TypeError(f"unsupported statement value {type(value).__name__}")


def statement(kind: str, fields: Sequence[tuple[str, bytes | str | int]]) -> bytes:
    """The exact byte string an ed25519 signature covers.

    ``prefix ‖ len32(kind) ‖ kind ‖ u32 count ‖ (len32(name) ‖ name ‖ len32(value) ‖ value)*``
    in the field order each message defines. Every part is length-prefixed, so two different
    statements never share bytes.
    """
    parts = [STATEMENT_PREFIX, len32(kind.encode("ascii")), len(fields).to_bytes(4, "big")]
    for name, value in fields:
        parts.append(len32(name.encode("ascii")))
        parts.append(len32(encode_value(value)))
    return b"".join(parts)


# --- signatures -----------------------------------------------------------------------------


class Signer(Protocol):
    """An ed25519 key that signs statements (the service's identity key, the node's TLS key)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519Signer:
    """:class:`Signer` on libsodium's ``crypto_sign``; the seed never appears in a repr."""

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != KEY_SIZE:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self._public = bytes(self._key.verify_key)

    def __repr__(self) -> str:
        return f"Ed25519Signer(public_key={self._public.hex()})"

    @property
    def public_key(self) -> bytes:
        return self._public

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        """The same key, to sign ledger transactions with (an access key of the account the
        operator granted it: the backup service's ``submit_attestation``)."""
        return self._key

    def sign(self, message: bytes) -> bytes:
        signature: bytes = self._key.sign(message).signature
        return signature


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 verification (libsodium ``crypto_sign_verify_detached``)."""
    if len(public_key) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def require_signature(public_key: bytes, message: bytes, signature: bytes, who: str) -> None:
    if not verify_signature(public_key, message, signature):
        raise BackupProtocolError("bad_signature", f"the {who} signature does not verify")
