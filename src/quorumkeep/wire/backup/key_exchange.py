"""Key agreement of a transfer (ephemeral–ephemeral and ephemeral–static crypto_kx) and what its
AEAD binds (docs/backup-protocol.md §5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.seal import (
    KxKeyPair,
    associated_data,
    client_session_keys,
    server_session_keys,
)
from quorumkeep.wire.backup.errors import BackupProtocolError
from quorumkeep.wire.backup.protocol import (
    DIRECTION_BACKUP,
    KDF_PERSONAL,
    LABEL_BACKUP,
    LABEL_RECOVERY,
)

# --- key agreement and sealing --------------------------------------------------------------


def _transfer_key(ephemeral: bytes, static: bytes) -> bytes:
    digest: bytes = blake2b(
        ephemeral + static, digest_size=32, person=KDF_PERSONAL, encoder=RawEncoder
    )
    return digest


def _kx(exchange: Callable[[], bytes]) -> bytes:
    try:
        return bytes(exchange())
    except SealError:
        raise BackupProtocolError("decryption_failed", "an X25519 key is not usable") from None


def backup_key_node(
    node_ephemeral: KxKeyPair, service_ephemeral_public_key: bytes, service_encryption_key: bytes
) -> bytes:
    """Transfer key of a backup on the node (the sender, crypto_kx client)."""
    eph = _kx(lambda: client_session_keys(node_ephemeral, service_ephemeral_public_key).tx)
    sta = _kx(lambda: client_session_keys(node_ephemeral, service_encryption_key).tx)
    return _transfer_key(eph, sta)


def backup_key_service(
    service_ephemeral: KxKeyPair, service_encryption: KxKeyPair, node_ephemeral_public_key: bytes
) -> bytes:
    """Transfer key of a backup on the service (the receiver, crypto_kx server)."""
    eph = _kx(lambda: server_session_keys(service_ephemeral, node_ephemeral_public_key).rx)
    sta = _kx(lambda: server_session_keys(service_encryption, node_ephemeral_public_key).rx)
    return _transfer_key(eph, sta)


def recovery_key_service(
    service_ephemeral: KxKeyPair, service_encryption: KxKeyPair, node_ephemeral_public_key: bytes
) -> bytes:
    """Transfer key of a recovery on the service (the sender, crypto_kx client)."""
    eph = _kx(lambda: client_session_keys(service_ephemeral, node_ephemeral_public_key).tx)
    sta = _kx(lambda: client_session_keys(service_encryption, node_ephemeral_public_key).tx)
    return _transfer_key(eph, sta)


def recovery_key_node(
    node_ephemeral: KxKeyPair, service_ephemeral_public_key: bytes, service_encryption_key: bytes
) -> bytes:
    """Transfer key of a recovery on the node (the receiver, crypto_kx server)."""
    eph = _kx(lambda: server_session_keys(node_ephemeral, service_ephemeral_public_key).rx)
    sta = _kx(lambda: server_session_keys(node_ephemeral, service_encryption_key).rx)
    return _transfer_key(eph, sta)


@dataclass(frozen=True)
class Binding:
    """Everything a sealed transfer is bound to through its associated data."""

    direction: str
    account: str
    epoch: int
    keyset_hash: bytes
    node_tls_public_key: bytes
    service_identity_public_key: bytes
    service_encryption_public_key: bytes
    exchange: bytes
    """The request nonce (backup) or the session id (recovery)."""

    def associated_data(self, sender: bytes, receiver: bytes) -> bytes:
        label = LABEL_BACKUP if self.direction == DIRECTION_BACKUP else LABEL_RECOVERY
        return associated_data(
            label,
            sender=sender,
            receiver=receiver,
            binding={
                "account": self.account,
                "direction": self.direction,
                "epoch": self.epoch,
                "exchange": self.exchange.hex(),
                "keyset": self.keyset_hash.hex(),
                "node_tls_public_key": self.node_tls_public_key.hex(),
                "service_encryption_public_key": self.service_encryption_public_key.hex(),
                "service_identity_public_key": self.service_identity_public_key.hex(),
            },
        )
