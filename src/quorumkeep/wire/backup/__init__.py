"""The backup protocol between a node and its operator's backup service.

One package for both ends (the node's ``/backup/...`` endpoints and the backup service's
client), so the two can never drift apart. Byte layouts, encodings and the sequence of both
flows are specified in docs/backup-protocol.md; this package is the reference implementation.

Its modules, from the bottom up: ``protocol`` (constants, header names, paths), ``errors``
(codes and statuses), ``fields`` (readers of single values), ``statements`` (signed byte
strings, ed25519), ``keyset`` (the contract's keyset and public key package views),
``shares`` (the sealed plaintext and its check against the contract), ``key_exchange``
(transfer keys and AEAD binding), ``codec`` (the declarative field codec of messages),
``hello``, ``messages`` (backup response, recovery session, push and ack) and ``replay``
(the node's nonce table). Import the public names from this package, not from its modules.

In short:

- **Authentication.** The backup service signs what it sends with its ed25519 identity key,
  the node with its TLS key; each side checks the other's signature against the key the
  contract registers (``backup_service_info`` / the participant's or the migration
  destination's ``tls_public_key``). Every signed statement starts with a domain-separation
  prefix and names its kind, so no signature can be reused for another message.
- **Forward secrecy.** Each exchange uses fresh X25519 key pairs on both sides (libsodium
  ``crypto_kx``), each signed by its side's identity key; the ephemeral secrets live only in
  memory for the exchange.
- **The registered encryption key** of the backup service is mixed into the key agreement:
  the transfer key needs both an ephemeral–ephemeral and an ephemeral–static exchange, so
  only the holder of the registered X25519 secret can open a backup, even if the service's
  signing key leaked; and on recovery the node knows the shares came from that holder.
- **Sealing.** XChaCha20-Poly1305 with associated data binding account, epoch, keyset hash,
  direction, both ephemeral keys, the node and service keys and the exchange id.
- **Replay.** Timestamps within :data:`TIMESTAMP_WINDOW_MS` and single-use nonces
  (:class:`ReplayGuard`); requests name the node's TLS key so they cannot be relayed.

Nothing here does I/O, reads a clock or draws randomness: callers pass ``now_ms`` and
``random_bytes``. No error message ever contains a share, a secret key or a nonce secret.
"""

from quorumkeep.contract.state import KEYSET_HASH_PREFIX, DomainKey, Keyset
from quorumkeep.wire.backup.errors import (
    CLIENT_CODES,
    ERROR_STATUS,
    BackupProtocolError,
)
from quorumkeep.wire.backup.hello import (
    Hello,
    check_timestamp,
    make_hello,
)
from quorumkeep.wire.backup.key_exchange import (
    Binding,
    backup_key_node,
    backup_key_service,
    recovery_key_node,
    recovery_key_service,
)
from quorumkeep.wire.backup.keyset import (
    PublicKeyPackageInfo,
    public_key_package_json,
    read_keyset,
)
from quorumkeep.wire.backup.messages import (
    BackupResponse,
    RecoveryAck,
    RecoveryPush,
    RecoverySession,
    check_recovery_ack,
    check_recovery_session,
    make_recovery_ack,
    make_recovery_session,
    open_backup,
    open_recovery,
    seal_backup,
    seal_recovery,
)
from quorumkeep.wire.backup.protocol import (
    HELLO_HEADERS,
    KEY_SIZE,
    MAX_BODY_BYTES,
    MAX_DOMAINS,
    NONCE_SIZE,
    PATH_KEYSHARES,
    PATH_RECOVERY_SESSION,
    PROTOCOL_VERSION,
    PURPOSES,
    SESSION_ID_SIZE,
    SESSION_LIFETIME_MS,
    SHARE_SIZE,
    SIGNATURE_SIZE,
    STATEMENT_PREFIX,
    TIMESTAMP_WINDOW_MS,
    Purpose,
)
from quorumkeep.wire.backup.replay import (
    ReplayGuard,
)
from quorumkeep.wire.backup.shares import (
    KeyShare,
    VerifiedShares,
    decode_shares,
    encode_shares,
    verify_shares,
)
from quorumkeep.wire.backup.statements import (
    Ed25519Signer,
    Signer,
    encode_value,
    statement,
    verify_signature,
)

__all__ = [
    "CLIENT_CODES",
    "ERROR_STATUS",
    "HELLO_HEADERS",
    "KEYSET_HASH_PREFIX",
    "KEY_SIZE",
    "MAX_BODY_BYTES",
    "MAX_DOMAINS",
    "NONCE_SIZE",
    "PATH_KEYSHARES",
    "PATH_RECOVERY_SESSION",
    "PROTOCOL_VERSION",
    "PURPOSES",
    "SESSION_ID_SIZE",
    "SESSION_LIFETIME_MS",
    "SHARE_SIZE",
    "SIGNATURE_SIZE",
    "STATEMENT_PREFIX",
    "TIMESTAMP_WINDOW_MS",
    "BackupProtocolError",
    "BackupResponse",
    "Binding",
    "DomainKey",
    "Ed25519Signer",
    "Hello",
    "KeyShare",
    "Keyset",
    "PublicKeyPackageInfo",
    "Purpose",
    "RecoveryAck",
    "RecoveryPush",
    "RecoverySession",
    "ReplayGuard",
    "Signer",
    "VerifiedShares",
    "backup_key_node",
    "backup_key_service",
    "check_recovery_ack",
    "check_recovery_session",
    "check_timestamp",
    "decode_shares",
    "encode_shares",
    "encode_value",
    "make_hello",
    "make_recovery_ack",
    "make_recovery_session",
    "open_backup",
    "open_recovery",
    "public_key_package_json",
    "read_keyset",
    "recovery_key_node",
    "recovery_key_service",
    "seal_backup",
    "seal_recovery",
    "statement",
    "verify_shares",
    "verify_signature",
]
