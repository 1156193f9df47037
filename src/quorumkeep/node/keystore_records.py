"""What the keystore holds, as values, and the byte encodings of its public columns
(docs/storage.md, "Records"): owners, key shares, presignatures, commitment lists and the
associated data every sealed column is bound to.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from quorumkeep.encoding.fields import len32
from quorumkeep.node.keystore_errors import InvalidRecord, RecordCorrupted

AD_PREFIX = b"quorumkeep keystore v1\x00"
ELEMENT_SIZE = 32
MAX_INT = 2**63 - 1
_PRESIGNATURE_ID = re.compile(r"[!-~]{1,128}")


def check_int(value: object, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT:
        raise InvalidRecord(f"{what} must be an integer in [{minimum}, 2^63)")
    return value


def check_bytes(value: object, what: str, *, allow_empty: bool = True) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidRecord(f"{what} must be bytes")
    data = bytes(value)
    if not data and not allow_empty:
        raise InvalidRecord(f"{what} must not be empty")
    return data


def check_presignature_id(value: object) -> str:
    if not isinstance(value, str) or not _PRESIGNATURE_ID.fullmatch(value):
        raise InvalidRecord("presignature id must be 1..128 printable ASCII characters, no spaces")
    return value


@dataclass(frozen=True)
class KeystoreOwner:
    """The node a store belongs to; part of every record's associated data."""

    account: str
    tls_public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.account, str) or not self.account:
            raise InvalidRecord("owner account must be a non-empty string")
        if not isinstance(self.tls_public_key, bytes) or len(self.tls_public_key) != 32:
            raise InvalidRecord("owner TLS public key must be 32 bytes")


@dataclass(frozen=True)
class KeyShareRef:
    domain_id: int
    epoch: int


@dataclass(frozen=True)
class StoredKeyShare:
    """A key share as stored: ``share`` is the secret, ``public`` travels with it unsealed."""

    domain_id: int
    epoch: int
    share: bytes = field(repr=False)
    public: bytes = b""

    def __repr__(self) -> str:
        return f"StoredKeyShare(domain_id={self.domain_id}, epoch={self.epoch}, share=<hidden>)"


Commitments = Mapping[int, tuple[bytes, bytes]]
"""participant id → (hiding, binding) nonce commitments, RFC 9591's commitment list."""


def _normalize_commitments(commitments: object) -> dict[int, tuple[bytes, bytes]]:
    if not isinstance(commitments, Mapping) or not commitments:
        raise InvalidRecord("commitments must be a non-empty mapping participant id → pair")
    out: dict[int, tuple[bytes, bytes]] = {}
    for participant, pair in sorted(commitments.items()):
        check_int(participant, "participant id", minimum=1)
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidRecord("each commitment is a (hiding, binding) pair")
        hiding, binding = (bytes(check_bytes(x, "commitment")) for x in pair)
        if len(hiding) != ELEMENT_SIZE or len(binding) != ELEMENT_SIZE:
            raise InvalidRecord(f"nonce commitments are {ELEMENT_SIZE}-byte group elements")
        out[participant] = (hiding, binding)
    return out


@dataclass(frozen=True)
class PresignatureInfo:
    """The public part of a presignature: who is in it and their nonce commitments."""

    id: str
    domain_id: int
    epoch: int
    commitments: Commitments
    created_at: float

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(sorted(self.commitments))


@dataclass(frozen=True)
class Presignature:
    """One presignature this node takes part in; ``nonces`` is this node's secret nonce pair.

    ``nonces`` is opaque to the keystore (the signing protocol encodes it). ``created_at`` is
    Unix time in seconds, stored with millisecond precision.
    """

    id: str
    domain_id: int
    epoch: int
    commitments: Commitments
    nonces: bytes = field(repr=False)
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        check_presignature_id(self.id)
        check_int(self.domain_id, "domain id")
        check_int(self.epoch, "epoch")
        object.__setattr__(self, "commitments", _normalize_commitments(self.commitments))
        object.__setattr__(self, "nonces", check_bytes(self.nonces, "nonces", allow_empty=False))
        if not isinstance(self.created_at, int | float) or not math.isfinite(self.created_at):
            raise InvalidRecord("created_at must be a finite number of seconds")
        if not 0 <= self.created_at * 1000 <= MAX_INT:
            raise InvalidRecord("created_at out of range")

    def __repr__(self) -> str:
        return (
            f"Presignature(id={self.id!r}, domain_id={self.domain_id}, epoch={self.epoch}, "
            f"participants={list(self.participants)}, nonces=<hidden>)"
        )

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(sorted(self.commitments))

    @property
    def info(self) -> PresignatureInfo:
        return PresignatureInfo(
            self.id, self.domain_id, self.epoch, self.commitments, self.created_at
        )


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def encode_commitments(commitments: Commitments) -> bytes:
    return b"".join(
        _u64(participant) + hiding + binding
        for participant, (hiding, binding) in sorted(commitments.items())
    )


def decode_commitments(data: bytes) -> dict[int, tuple[bytes, bytes]]:
    entry = 8 + 2 * ELEMENT_SIZE
    if not data or len(data) % entry:
        raise RecordCorrupted("stored commitment list has a bad length")
    out: dict[int, tuple[bytes, bytes]] = {}
    for offset in range(0, len(data), entry):
        participant = int.from_bytes(data[offset : offset + 8], "big")
        hiding = data[offset + 8 : offset + 8 + ELEMENT_SIZE]
        binding = data[offset + 8 + ELEMENT_SIZE : offset + entry]
        out[participant] = (hiding, binding)
    return out


def key_share_record(domain_id: int, epoch: int, public: bytes) -> bytes:
    return _u64(domain_id) + _u64(epoch) + len32(public)


def presignature_record(
    presignature_id: str, domain_id: int, epoch: int, created_ms: int, commitments: bytes
) -> bytes:
    return (
        len32(presignature_id.encode("ascii"))
        + _u64(domain_id)
        + _u64(epoch)
        + _u64(created_ms)
        + len32(commitments)
    )


def record_associated_data(kind: str, record: bytes, owner: KeystoreOwner) -> bytes:
    """``AD_PREFIX ‖ field(kind) ‖ field(record) ‖ field(account) ‖ field(tls key)``."""
    return (
        AD_PREFIX
        + len32(kind.encode("ascii"))
        + len32(record)
        + len32(owner.account.encode("utf-8"))
        + len32(owner.tls_public_key)
    )
