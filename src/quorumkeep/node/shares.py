"""How a key share is laid out in the keystore: the secret scalar, and its public package.

The keystore stores a share as two byte strings per (domain id, epoch): ``share`` (sealed)
and ``public`` (in the clear, but bound to the sealed value by the record's associated
data). ``share`` is exactly the 32-byte signing share, the one secret; ``public`` is
everything else a ``KeyPackage`` and ``PublicKeyPackage`` need::

    public = u8 version (1) ‖ u64 identifier (big-endian) ‖ public key package bytes

where the public key package bytes are ``key_packages.public_key_package_to_bytes`` (the form
nodes exchange; docs/node-protocols.md). Decoding validates every element and checks
share·G against our verifying share: a record that fails is refused
(:class:`ShareFormatError`) rather than used to sign garbage. The backup protocol
carries shares in its own sealed JSON document (docs/backup-protocol.md).
"""

from __future__ import annotations

from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import scalar_decode
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.key_packages import (
    key_package_from_share,
    public_key_package_from_bytes,
    public_key_package_to_bytes,
)
from quorumkeep.node.keystore_records import StoredKeyShare
from quorumkeep.node.messages_fields import MAX_ID, MessageError

SHARE_FORMAT_VERSION = 1


class ShareFormatError(ValueError):
    """A stored share is not in the documented form or is inconsistent (never shows values)."""

    code = "invalid_key_share"


def encode_public(identifier: int, public: PublicKeyPackage) -> bytes:
    if not 1 <= identifier <= MAX_ID:
        raise ShareFormatError("identifier out of range")
    return (
        bytes([SHARE_FORMAT_VERSION])
        + identifier.to_bytes(8, "big")
        + public_key_package_to_bytes(public)
    )


def encode_key_share(key: KeyPackage, public: PublicKeyPackage) -> tuple[bytes, bytes]:
    """(share, public) for ``Keystore.put_key_share``; refuses a package that does not match."""
    if key.group_public_key != public.group_public_key or key.threshold != public.threshold:
        raise ShareFormatError("key package and public key package are for different keys")
    if public.verifying_shares.get(key.identifier) != key.verifying_share:
        raise ShareFormatError("the key package's verifying share is not in the public package")
    return bytes(key.signing_share), encode_public(key.identifier, public)


def decode_public(data: bytes) -> tuple[int, PublicKeyPackage]:
    """(identifier, public package) from a share record's public bytes."""
    if len(data) < 9 or data[0] != SHARE_FORMAT_VERSION:
        raise ShareFormatError("key share public data: unknown version or truncated")
    identifier = int.from_bytes(data[1:9], "big")
    try:
        public = public_key_package_from_bytes(data[9:])
    except MessageError as exc:
        raise ShareFormatError(f"key share public data: {exc}") from None
    if identifier not in public.verifying_shares:
        raise ShareFormatError("key share: our identifier has no verifying share")
    return identifier, public


def decode_key_share(stored: StoredKeyShare) -> tuple[KeyPackage, PublicKeyPackage]:
    identifier, public = decode_public(stored.public)
    try:
        key = key_package_from_share(identifier, scalar_decode(stored.share), public)
    except (MessageError, InvalidEncoding):
        raise ShareFormatError("key share: the secret does not match our verifying share") from None
    return key, public
