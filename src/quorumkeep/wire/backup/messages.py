"""The sealed transfers and their companions: backup response, recovery session, recovery push and
its acknowledgement (docs/backup-protocol.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from quorumkeep.contract.state import Keyset
from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import (
    KxKeyPair,
    aead_open,
    aead_seal,
)
from quorumkeep.wire.backup.codec import (
    ACCOUNT,
    CIPHERTEXT,
    EPHEMERAL_KEY,
    INTEGER,
    KEYSET,
    KEYSET_HASH,
    NONCE,
    REGISTERED_KEY,
    SESSION_ID,
    SIGNATURE,
    Envelope,
    JsonMessage,
    sign_message,
)
from quorumkeep.wire.backup.errors import BackupProtocolError
from quorumkeep.wire.backup.hello import Hello, check_timestamp
from quorumkeep.wire.backup.key_exchange import (
    Binding,
    backup_key_node,
    backup_key_service,
    recovery_key_node,
    recovery_key_service,
)
from quorumkeep.wire.backup.protocol import (
    DIRECTION_BACKUP,
    DIRECTION_RECOVERY,
    NONCE_SIZE,
    SESSION_ID_SIZE,
    SESSION_LIFETIME_MS,
)
from quorumkeep.wire.backup.shares import KeyShare, decode_shares, encode_shares
from quorumkeep.wire.backup.statements import Signer, require_signature

_Transfer = TypeVar("_Transfer", "BackupResponse", "RecoveryPush")


# --- sealed transfers -------------------------------------------------------------------------


def _binding(direction: str, transfer: BackupResponse | RecoveryPush, exchange: bytes) -> Binding:
    return Binding(
        direction,
        transfer.account,
        transfer.keyset.epoch,
        transfer.keyset.hash,
        transfer.node_tls_public_key,
        transfer.service_identity_public_key,
        transfer.service_encryption_public_key,
        exchange,
    )


def _seal(
    unsigned: _Transfer,
    *,
    key: bytes,
    sender: bytes,
    receiver: bytes,
    shares: Sequence[KeyShare],
    signer: Signer,
    random_bytes: RandomBytes,
) -> _Transfer:
    """Seal ``shares`` into the transfer (bound by its associated data), then sign it: the
    signature covers the ciphertext."""
    ad = unsigned.binding().associated_data(sender, receiver)
    sealed = replace(unsigned, ciphertext=aead_seal(key, encode_shares(shares), ad, random_bytes))
    return sign_message(sealed, signer)


def _open_shares(
    transfer: BackupResponse | RecoveryPush, *, key: bytes, sender: bytes, receiver: bytes
) -> list[KeyShare]:
    ad = transfer.binding().associated_data(sender, receiver)
    try:
        plaintext = aead_open(key, transfer.ciphertext, ad)
    except SealError:
        raise BackupProtocolError(
            "decryption_failed",
            "the sealed shares do not open for this exchange (wrong keys, binding or bytes)",
        ) from None
    return decode_shares(plaintext)


# --- backup response --------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResponse(JsonMessage):
    """The node's answer to a backup hello: its shares sealed to this exchange, signed."""

    _ENVELOPE = Envelope("backup-response", "backup response")

    account: str = field(metadata=ACCOUNT)
    node_tls_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_encryption_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    node_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    request_nonce: bytes = field(metadata=NONCE)
    keyset: Keyset = field(metadata=KEYSET)
    timestamp_ms: int = field(metadata=INTEGER)
    ciphertext: bytes = field(metadata=CIPHERTEXT)
    signature: bytes = field(default=b"", metadata=SIGNATURE)

    def binding(self) -> Binding:
        return _binding(DIRECTION_BACKUP, self, self.request_nonce)


def seal_backup(
    hello: Hello,
    *,
    node: Signer,
    service_encryption_public_key: bytes,
    keyset: Keyset,
    shares: Sequence[KeyShare],
    now_ms: int,
    random_bytes: RandomBytes,
) -> BackupResponse:
    """The node's side: seal ``shares`` to this hello's exchange and sign the response."""
    ephemeral = KxKeyPair.generate(random_bytes)
    unsigned = BackupResponse(
        account=hello.account,
        node_tls_public_key=node.public_key,
        service_identity_public_key=hello.service_identity_public_key,
        service_encryption_public_key=service_encryption_public_key,
        service_ephemeral_public_key=hello.service_ephemeral_public_key,
        node_ephemeral_public_key=ephemeral.public_key,
        request_nonce=hello.nonce,
        keyset=keyset,
        timestamp_ms=now_ms,
        ciphertext=b"",
    )
    return _seal(
        unsigned,
        key=backup_key_node(
            ephemeral, hello.service_ephemeral_public_key, service_encryption_public_key
        ),
        sender=ephemeral.public_key,
        receiver=hello.service_ephemeral_public_key,
        shares=shares,
        signer=node,
        random_bytes=random_bytes,
    )


def open_backup(
    response: BackupResponse,
    *,
    hello: Hello,
    node_tls_public_key: bytes,
    service_ephemeral: KxKeyPair,
    service_encryption: KxKeyPair,
    now_ms: int,
) -> list[KeyShare]:
    """The service's side: check that the response answers ``hello``, comes from the node
    whose TLS key the contract lists, is fresh, then open it. Shares are not yet checked
    against the contract (:func:`verify_shares` does that)."""
    require_signature(node_tls_public_key, response.statement(), response.signature, "node")
    echoes = (
        response.account == hello.account,
        response.node_tls_public_key == node_tls_public_key == hello.node_tls_public_key,
        response.service_identity_public_key == hello.service_identity_public_key,
        response.service_ephemeral_public_key == hello.service_ephemeral_public_key,
        response.service_encryption_public_key == service_encryption.public_key,
        response.request_nonce == hello.nonce,
    )
    if not all(echoes):
        raise BackupProtocolError(
            "malformed_response", "the node's response does not answer this request"
        )
    check_timestamp(response.timestamp_ms, now_ms, "response")
    return _open_shares(
        response,
        key=backup_key_service(
            service_ephemeral, service_encryption, response.node_ephemeral_public_key
        ),
        sender=response.node_ephemeral_public_key,
        receiver=service_ephemeral.public_key,
    )


# --- recovery session -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoverySession(JsonMessage):
    """The node's answer to a recovery hello: its ephemeral key for this migration, signed."""

    _ENVELOPE = Envelope("recovery-session", "recovery session")

    account: str = field(metadata=ACCOUNT)
    node_tls_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    node_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    request_nonce: bytes = field(metadata=NONCE)
    session_id: bytes = field(metadata=SESSION_ID)
    migration_started_height: int = field(metadata=INTEGER)
    expires_at_ms: int = field(metadata=INTEGER)
    signature: bytes = field(default=b"", metadata=SIGNATURE)


def make_recovery_session(
    hello: Hello,
    *,
    node: Signer,
    node_ephemeral: KxKeyPair,
    migration_started_height: int,
    now_ms: int,
    random_bytes: RandomBytes,
) -> RecoverySession:
    unsigned = RecoverySession(
        account=hello.account,
        node_tls_public_key=node.public_key,
        service_identity_public_key=hello.service_identity_public_key,
        service_ephemeral_public_key=hello.service_ephemeral_public_key,
        node_ephemeral_public_key=node_ephemeral.public_key,
        request_nonce=hello.nonce,
        session_id=random_bytes(SESSION_ID_SIZE),
        migration_started_height=migration_started_height,
        expires_at_ms=now_ms + SESSION_LIFETIME_MS,
    )
    return sign_message(unsigned, node)


def check_recovery_session(
    session: RecoverySession, *, hello: Hello, node_tls_public_key: bytes, now_ms: int
) -> None:
    """The service's side: the session answers ``hello`` and is signed by the destination."""
    require_signature(node_tls_public_key, session.statement(), session.signature, "node")
    echoes = (
        session.account == hello.account,
        session.node_tls_public_key == node_tls_public_key == hello.node_tls_public_key,
        session.service_identity_public_key == hello.service_identity_public_key,
        session.service_ephemeral_public_key == hello.service_ephemeral_public_key,
        session.request_nonce == hello.nonce,
    )
    if not all(echoes):
        raise BackupProtocolError(
            "malformed_response", "the node's session does not answer this request"
        )
    if session.expires_at_ms <= now_ms:
        raise BackupProtocolError("stale_timestamp", "the recovery session has already expired")


# --- recovery push ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryPush(JsonMessage):
    """``PUT /backup/keyshares``: the shares sealed to a recovery session, service-signed."""

    _ENVELOPE = Envelope("recovery-shares", "recovery push")

    account: str = field(metadata=ACCOUNT)
    node_tls_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_encryption_public_key: bytes = field(metadata=REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    node_ephemeral_public_key: bytes = field(metadata=EPHEMERAL_KEY)
    session_id: bytes = field(metadata=SESSION_ID)
    keyset: Keyset = field(metadata=KEYSET)
    timestamp_ms: int = field(metadata=INTEGER)
    nonce: bytes = field(metadata=NONCE)
    ciphertext: bytes = field(metadata=CIPHERTEXT)
    signature: bytes = field(default=b"", metadata=SIGNATURE)

    def binding(self) -> Binding:
        return _binding(DIRECTION_RECOVERY, self, self.session_id)

    def verify(self, identity_public_key: bytes) -> None:
        require_signature(identity_public_key, self.statement(), self.signature, "push")


def seal_recovery(
    session: RecoverySession,
    *,
    identity: Signer,
    service_ephemeral: KxKeyPair,
    service_encryption: KxKeyPair,
    keyset: Keyset,
    shares: Sequence[KeyShare],
    now_ms: int,
    random_bytes: RandomBytes,
) -> RecoveryPush:
    """The service's side: seal ``shares`` to the session's node ephemeral key and sign."""
    unsigned = RecoveryPush(
        account=session.account,
        node_tls_public_key=session.node_tls_public_key,
        service_identity_public_key=identity.public_key,
        service_encryption_public_key=service_encryption.public_key,
        service_ephemeral_public_key=service_ephemeral.public_key,
        node_ephemeral_public_key=session.node_ephemeral_public_key,
        session_id=session.session_id,
        keyset=keyset,
        timestamp_ms=now_ms,
        nonce=random_bytes(NONCE_SIZE),
        ciphertext=b"",
    )
    return _seal(
        unsigned,
        key=recovery_key_service(
            service_ephemeral, service_encryption, session.node_ephemeral_public_key
        ),
        sender=service_ephemeral.public_key,
        receiver=session.node_ephemeral_public_key,
        shares=shares,
        signer=identity,
        random_bytes=random_bytes,
    )


def open_recovery(
    push: RecoveryPush, *, node_ephemeral: KxKeyPair, service_encryption_public_key: bytes
) -> list[KeyShare]:
    """The node's side, after every check on the push: open the shares (not yet verified)."""
    if push.service_encryption_public_key != service_encryption_public_key:
        raise BackupProtocolError(
            "unregistered_caller", "the push names another encryption key than the registered one"
        )
    return _open_shares(
        push,
        key=recovery_key_node(
            node_ephemeral, push.service_ephemeral_public_key, service_encryption_public_key
        ),
        sender=push.service_ephemeral_public_key,
        receiver=node_ephemeral.public_key,
    )


@dataclass(frozen=True)
class RecoveryAck(JsonMessage):
    """The node's signed receipt: it verified and imported the shares of this keyset."""

    _ENVELOPE = Envelope(
        "recovery-ack",
        "recovery ack",
        status="imported",
        signed_order=(
            "status",
            "account",
            "node_tls_public_key",
            "session_id",
            "epoch",
            "keyset_hash",
        ),
    )

    account: str = field(metadata=ACCOUNT)
    node_tls_public_key: bytes = field(metadata=REGISTERED_KEY)
    session_id: bytes = field(metadata=SESSION_ID)
    keyset_hash: bytes = field(metadata=KEYSET_HASH)
    epoch: int = field(metadata=INTEGER)
    signature: bytes = field(default=b"", metadata=SIGNATURE)


def make_recovery_ack(push: RecoveryPush, *, node: Signer) -> RecoveryAck:
    unsigned = RecoveryAck(
        push.account, node.public_key, push.session_id, push.keyset.hash, push.keyset.epoch
    )
    return sign_message(unsigned, node)


def check_recovery_ack(ack: RecoveryAck, *, push: RecoveryPush) -> None:
    require_signature(push.node_tls_public_key, ack.statement(), ack.signature, "node")
    if (ack.account, ack.node_tls_public_key, ack.session_id, ack.keyset_hash, ack.epoch) != (
        push.account,
        push.node_tls_public_key,
        push.session_id,
        push.keyset.hash,
        push.keyset.epoch,
    ):
        raise BackupProtocolError("malformed_response", "the node's receipt is for another push")
