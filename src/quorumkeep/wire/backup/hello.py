"""The hello: what the backup service sends first, in HTTP headers, signed by its identity key
(docs/backup-protocol.md §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import (
    KxKeyPair,
)
from quorumkeep.encoding.fields import parse_decimal
from quorumkeep.wire.backup.codec import (
    ACCOUNT,
    EPHEMERAL_KEY,
    INTEGER,
    NONCE,
    PURPOSE,
    REGISTERED_KEY,
    SIGNATURE,
    Envelope,
    Signed,
    sign_message,
)
from quorumkeep.wire.backup.errors import BackupProtocolError, malformed
from quorumkeep.wire.backup.fields import (
    read_account,
    read_nonce,
    read_purpose,
    read_registered_key,
    read_signature,
    read_x25519_key,
)
from quorumkeep.wire.backup.protocol import (
    H_ACCOUNT,
    H_EPHEMERAL_KEY,
    H_NODE_KEY,
    H_NONCE,
    H_PURPOSE,
    H_SERVICE_KEY,
    H_SIGNATURE,
    H_TIMESTAMP,
    HELLO_HEADERS,
    NONCE_SIZE,
    TIMESTAMP_WINDOW_MS,
    Purpose,
)
from quorumkeep.wire.backup.statements import Signer, require_signature

# --- hello ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Signed):
    """What the backup service sends first, in HTTP headers, signed by its identity key."""

    _ENVELOPE = Envelope("hello", "hello")

    purpose: Purpose = field(metadata=PURPOSE)
    account: str = field(metadata=ACCOUNT)
    node_tls_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    timestamp_ms: int = field(metadata=INTEGER)
    nonce: bytes = field(metadata=NONCE)
    signature: bytes = field(default=b"", metadata=SIGNATURE)

    def to_headers(self) -> dict[str, str]:
        return {
            H_PURPOSE: self.purpose,
            H_ACCOUNT: self.account,
            H_NODE_KEY: self.node_tls_public_key.hex(),
            H_SERVICE_KEY: self.service_identity_public_key.hex(),
            H_EPHEMERAL_KEY: self.service_ephemeral_public_key.hex(),
            H_TIMESTAMP: str(self.timestamp_ms),
            H_NONCE: self.nonce.hex(),
            H_SIGNATURE: self.signature.hex(),
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Hello:
        lowered = {k.lower(): v for k, v in headers.items()}
        missing = [h for h in HELLO_HEADERS if h not in lowered]
        if missing:
            raise malformed(f"missing header(s): {', '.join(missing)}")
        purpose = read_purpose(lowered[H_PURPOSE], H_PURPOSE)
        # A header is text: the timestamp is checked as digits, not as a JSON integer.
        try:
            timestamp = parse_decimal(lowered[H_TIMESTAMP], 16, leading_zeros=True)
        except ValueError:
            raise malformed(f"{H_TIMESTAMP}: expected milliseconds since the Unix epoch") from None
        return cls(
            purpose=purpose,
            account=read_account(lowered[H_ACCOUNT], H_ACCOUNT),
            node_tls_public_key=read_registered_key(lowered[H_NODE_KEY], H_NODE_KEY),
            service_identity_public_key=read_registered_key(lowered[H_SERVICE_KEY], H_SERVICE_KEY),
            service_ephemeral_public_key=read_x25519_key(lowered[H_EPHEMERAL_KEY], H_EPHEMERAL_KEY),
            timestamp_ms=timestamp,
            nonce=read_nonce(lowered[H_NONCE], H_NONCE),
            signature=read_signature(lowered[H_SIGNATURE], H_SIGNATURE),
        )

    def verify(self, identity_public_key: bytes) -> None:
        require_signature(identity_public_key, self.statement(), self.signature, "hello")


def make_hello(
    purpose: Purpose,
    *,
    account: str,
    node_tls_public_key: bytes,
    identity: Signer,
    ephemeral: KxKeyPair,
    now_ms: int,
    random_bytes: RandomBytes,
) -> Hello:
    unsigned = Hello(
        purpose,
        account,
        node_tls_public_key,
        identity.public_key,
        ephemeral.public_key,
        now_ms,
        random_bytes(NONCE_SIZE),
    )
    return sign_message(unsigned, identity)


def check_timestamp(timestamp_ms: int, now_ms: int, what: str = "request") -> None:
    if abs(timestamp_ms - now_ms) > TIMESTAMP_WINDOW_MS:
        raise BackupProtocolError(
            "stale_timestamp",
            f"{what} timestamp is {abs(timestamp_ms - now_ms) / 1000:.1f}s from this clock "
            f"(window ±{TIMESTAMP_WINDOW_MS // 1000}s)",
        )
