"""The backup protocol between a node and its operator's backup service.

One module for both ends (the node's ``/backup/...`` endpoints and the backup service's
client), so the two can never drift apart. Byte layouts, encodings and the sequence of both
flows are specified in docs/backup-protocol.md; this module is the reference implementation.

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

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar

import nacl.exceptions
import nacl.signing
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from quorumkeep.crypto.errors import InvalidEncoding, SealError
from quorumkeep.crypto.group import RandomBytes, base_mul, element_decode, scalar_decode
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.crypto.seal import (
    KxKeyPair,
    aead_open,
    aead_seal,
    associated_data,
    client_session_keys,
    server_session_keys,
)

PROTOCOL_VERSION = 1
STATEMENT_PREFIX = b"quorumkeep backup v1\x00"
"""Every signed byte string starts with these 21 bytes (docs/backup-protocol.md §3)."""
KEYSET_HASH_PREFIX = b"quorumkeep keyset v1\x00"
KDF_PERSONAL = b"qkbackup-kdf-v1\x00"
"""BLAKE2b personalization of the transfer-key derivation (exactly 16 bytes)."""
LABEL_BACKUP = "quorumkeep/backup-shares v1"
LABEL_RECOVERY = "quorumkeep/recovery-shares v1"
DIRECTION_BACKUP = "node-to-service"
DIRECTION_RECOVERY = "service-to-node"
SHARES_FORMAT = "quorumkeep key shares v1"

KEY_SIZE = 32
SIGNATURE_SIZE = 64
NONCE_SIZE = 16
SESSION_ID_SIZE = 16
SHARE_SIZE = 32
TIMESTAMP_WINDOW_MS = 60_000
"""A message whose timestamp is more than this far from the receiver's clock is refused."""
SESSION_LIFETIME_MS = 120_000
MAX_BODY_BYTES = 256 * 1024
"""Largest PUT body a node reads (64 domains of shares need about 20 KiB)."""
MAX_DOMAINS = 64
MAX_ID = 2**63 - 1
MAX_ACCOUNT = 64
_ACCOUNT_RE = re.compile(r"^[a-z0-9_\-.]{2,64}$")
_HEX_RE = re.compile(r"^(?:[0-9a-f]{2})*$")
_ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")

Purpose = Literal["backup", "recovery"]
PURPOSES: tuple[Purpose, ...] = ("backup", "recovery")

# HTTP header names of a hello (case-insensitive on the wire).
H_PURPOSE = "quorumkeep-purpose"
H_ACCOUNT = "quorumkeep-account"
H_NODE_KEY = "quorumkeep-node-key"
H_SERVICE_KEY = "quorumkeep-service-key"
H_EPHEMERAL_KEY = "quorumkeep-ephemeral-key"
H_TIMESTAMP = "quorumkeep-timestamp"
H_NONCE = "quorumkeep-nonce"
H_SIGNATURE = "quorumkeep-signature"
HELLO_HEADERS = (
    H_PURPOSE,
    H_ACCOUNT,
    H_NODE_KEY,
    H_SERVICE_KEY,
    H_EPHEMERAL_KEY,
    H_TIMESTAMP,
    H_NONCE,
    H_SIGNATURE,
)

PATH_KEYSHARES = "/backup/keyshares"
PATH_RECOVERY_SESSION = "/backup/recovery-session"


# --- errors --------------------------------------------------------------------------------

ERROR_STATUS: Mapping[str, int] = {
    "malformed_request": 400,
    "stale_timestamp": 400,
    "decryption_failed": 400,
    "bad_signature": 401,
    "unregistered_caller": 403,
    "service_not_attested": 403,
    "no_shares": 404,
    "unknown_session": 404,
    "replay": 409,
    "wrong_epoch": 409,
    "wrong_keyset": 409,
    "no_open_migration": 409,
    "not_participant": 409,
    "body_too_large": 413,
    "wrong_node": 421,
    "shares_mismatch": 422,
    "too_many_requests": 429,
    "import_failed": 500,
    "contract_unavailable": 503,
}
"""Every error code a node answers with, and its HTTP status (docs/backup-protocol.md §7)."""

CLIENT_CODES = frozenset({"malformed_response", "node_unreachable", "node_error"})
"""Codes only the backup service's side raises (about what a node answered)."""


class BackupProtocolError(Exception):
    """A refused message. ``code`` is stable; the message is one line and holds no secret."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_STATUS and code not in CLIENT_CODES:
            raise ValueError(f"unknown backup protocol error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_STATUS.get(self.code, 400)

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def _malformed(message: str) -> BackupProtocolError:
    return BackupProtocolError("malformed_request", message)


# --- field helpers --------------------------------------------------------------------------


def _int(value: object, what: str, minimum: int = 0, maximum: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _malformed(f"{what}: expected an integer in [{minimum}, {maximum}]")
    return value


def _hex(value: object, what: str, size: int | None = None, maximum: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.match(value):
        raise _malformed(f"{what}: expected lowercase hex")
    data = bytes.fromhex(value)
    if size is not None and len(data) != size:
        raise _malformed(f"{what}: expected {size} bytes, got {len(data)}")
    if maximum is not None and len(data) > maximum:
        raise _malformed(f"{what}: longer than {maximum} bytes")
    return data


def _account(value: object, what: str = "account") -> str:
    if not isinstance(value, str) or not _ACCOUNT_RE.match(value):
        raise _malformed(f"{what}: expected an account name matching {_ACCOUNT_RE.pattern}")
    return value


def _object(value: object, what: str, required: Iterable[str]) -> Mapping[str, Any]:
    names = set(required)
    if not isinstance(value, Mapping):
        raise _malformed(f"{what}: expected a JSON object")
    if set(value) != names:
        missing = sorted(names - set(value))
        extra = sorted(str(k) for k in set(value) - names)
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing)}")
        if extra:
            detail.append(f"unknown {', '.join(extra)}")
        raise _malformed(f"{what}: {'; '.join(detail)}")
    return value


def _ed25519_key(value: object, what: str) -> bytes:
    data = _hex(value, what, KEY_SIZE)
    try:
        element_decode(data)
    except InvalidEncoding:
        raise _malformed(f"{what}: not a valid ed25519 public key") from None
    return data


def _x25519_key(value: object, what: str) -> bytes:
    data = _hex(value, what, KEY_SIZE)
    if data == bytes(KEY_SIZE):
        raise _malformed(f"{what}: the all-zero X25519 key is not a key")
    return data


def _purpose(value: object, what: str) -> Purpose:
    if value == "backup":
        return "backup"
    if value == "recovery":
        return "recovery"
    raise _malformed(f"{what}: expected backup or recovery")


def _registered_key(value: object, what: str) -> bytes:
    """A TLS, identity or encryption key: only its size is checked here, because each one is
    compared with the key the contract registers before it is used."""
    return _hex(value, what, KEY_SIZE)


def _nonce(value: object, what: str) -> bytes:
    return _hex(value, what, NONCE_SIZE)


def _session_id(value: object, what: str) -> bytes:
    return _hex(value, what, SESSION_ID_SIZE)


def _keyset_hash(value: object, what: str) -> bytes:
    return _hex(value, what, 32)


def _ciphertext(value: object, what: str) -> bytes:
    return _hex(value, what, maximum=MAX_BODY_BYTES)


def _signature(value: object, what: str) -> bytes:
    return _hex(value, what, SIGNATURE_SIZE)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


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
    parts = [STATEMENT_PREFIX, _field(kind.encode("ascii")), len(fields).to_bytes(4, "big")]
    for name, value in fields:
        parts.append(_field(name.encode("ascii")))
        parts.append(_field(encode_value(value)))
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


def _require_signature(public_key: bytes, message: bytes, signature: bytes, who: str) -> None:
    if not verify_signature(public_key, message, signature):
        raise BackupProtocolError("bad_signature", f"the {who} signature does not verify")


# --- keysets, shares and public key packages -------------------------------------------------


@dataclass(frozen=True)
class DomainKey:
    domain_id: int
    scheme: str
    public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "domain_id": self.domain_id,
            "scheme": self.scheme,
            "public_key": self.public_key.hex(),
        }


@dataclass(frozen=True)
class Keyset:
    """The contract's keyset view: the epoch and every domain's group key, ascending ids."""

    epoch: int
    domains: tuple[DomainKey, ...]

    @classmethod
    def from_json(cls, value: object, what: str = "keyset") -> Keyset:
        obj = _object(value, what, ["epoch", "domains"])
        epoch = _int(obj["epoch"], f"{what}.epoch")
        items = obj["domains"]
        if not isinstance(items, list) or len(items) > MAX_DOMAINS:
            raise _malformed(f"{what}.domains: expected a list of at most {MAX_DOMAINS}")
        domains = []
        previous = -1
        for i, item in enumerate(items):
            name = f"{what}.domains[{i}]"
            d = _object(item, name, ["domain_id", "scheme", "public_key"])
            domain_id = _int(d["domain_id"], f"{name}.domain_id")
            if domain_id <= previous:
                raise _malformed(f"{what}.domains: ids must be ascending and distinct")
            previous = domain_id
            scheme = d["scheme"]
            if not isinstance(scheme, str) or not 1 <= len(scheme) <= 32 or not scheme.isascii():
                raise _malformed(f"{name}.scheme: expected 1..32 ASCII characters")
            domains.append(DomainKey(domain_id, scheme, _ed25519_key(d["public_key"], name)))
        return cls(epoch, tuple(domains))

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "domains": [d.to_json() for d in self.domains]}

    def canonical(self) -> bytes:
        """Sorted keys, no whitespace, ASCII (every value is an integer, hex or a scheme)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("ascii")

    @property
    def hash(self) -> bytes:
        """BLAKE2b-256 of the prefix and the canonical JSON: names the keyset in AD and
        signatures."""
        digest: bytes = blake2b(
            KEYSET_HASH_PREFIX + self.canonical(), digest_size=32, encoder=RawEncoder
        )
        return digest

    @property
    def domain_ids(self) -> tuple[int, ...]:
        return tuple(d.domain_id for d in self.domains)

    def get(self, domain_id: int) -> DomainKey | None:
        for d in self.domains:
            if d.domain_id == domain_id:
                return d
        return None


@dataclass(frozen=True)
class KeyShare:
    """One participant's signing share of one domain's key in one epoch (secret)."""

    domain_id: int
    epoch: int
    participant_id: int
    signing_share: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"KeyShare(domain_id={self.domain_id}, epoch={self.epoch}, "
            f"participant_id={self.participant_id}, signing_share=<hidden>)"
        )


def encode_shares(shares: Sequence[KeyShare]) -> bytes:
    """The plaintext sealed in a transfer and at rest: UTF-8 JSON, shares by ascending domain."""
    ordered = sorted(shares, key=lambda s: s.domain_id)
    document = {
        "format": SHARES_FORMAT,
        "shares": [
            {
                "domain_id": s.domain_id,
                "epoch": s.epoch,
                "participant_id": s.participant_id,
                "signing_share": s.signing_share.hex(),
            }
            for s in ordered
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


def decode_shares(data: bytes) -> list[KeyShare]:
    """Strict inverse of :func:`encode_shares` (errors name fields, never values)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _malformed("shares: not UTF-8 JSON") from None
    obj = _object(document, "shares document", ["format", "shares"])
    if obj["format"] != SHARES_FORMAT:
        raise _malformed("shares document: unknown format")
    items = obj["shares"]
    if not isinstance(items, list) or len(items) > MAX_DOMAINS:
        raise _malformed(f"shares: expected a list of at most {MAX_DOMAINS}")
    out: list[KeyShare] = []
    previous = -1
    for i, item in enumerate(items):
        name = f"shares[{i}]"
        s = _object(item, name, ["domain_id", "epoch", "participant_id", "signing_share"])
        domain_id = _int(s["domain_id"], f"{name}.domain_id")
        if domain_id <= previous:
            raise _malformed("shares: domain ids must be ascending and distinct")
        previous = domain_id
        share = _hex(s["signing_share"], f"{name}.signing_share", SHARE_SIZE)
        try:
            scalar_decode(share)
        except InvalidEncoding:
            raise _malformed(f"{name}.signing_share: not a canonical scalar") from None
        out.append(
            KeyShare(
                domain_id,
                _int(s["epoch"], f"{name}.epoch"),
                _int(s["participant_id"], f"{name}.participant_id", 1),
                share,
            )
        )
    return out


@dataclass(frozen=True)
class PublicKeyPackageInfo:
    """The contract's ``public_key_package`` view of one domain."""

    domain_id: int
    epoch: int
    public_key: bytes
    threshold: int
    verifying_shares: Mapping[int, bytes]

    @classmethod
    def from_json(cls, value: object, what: str = "public key package") -> PublicKeyPackageInfo:
        obj = _object(
            value, what, ["domain_id", "epoch", "public_key", "threshold", "verifying_shares"]
        )
        raw = obj["verifying_shares"]
        if not isinstance(raw, Mapping) or not raw:
            raise _malformed(f"{what}.verifying_shares: expected a non-empty object")
        shares: dict[int, bytes] = {}
        for key, share in raw.items():
            if not isinstance(key, str) or not _ID_RE.match(key):
                raise _malformed(f"{what}.verifying_shares: keys are participant ids")
            pid = _int(int(key), f"{what}.verifying_shares key", 1)
            shares[pid] = _ed25519_key(share, f"{what}.verifying_shares[{pid}]")
        threshold = _int(obj["threshold"], f"{what}.threshold", 1, len(shares))
        return cls(
            _int(obj["domain_id"], f"{what}.domain_id"),
            _int(obj["epoch"], f"{what}.epoch"),
            _ed25519_key(obj["public_key"], f"{what}.public_key"),
            threshold,
            dict(sorted(shares.items())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "public_key": self.public_key.hex(),
            "threshold": self.threshold,
            "verifying_shares": {str(p): s.hex() for p, s in sorted(self.verifying_shares.items())},
        }

    def to_crypto(self) -> PublicKeyPackage:
        return PublicKeyPackage(self.public_key, dict(self.verifying_shares), self.threshold)


def public_key_package_json(domain_id: int, epoch: int, public: PublicKeyPackage) -> dict[str, Any]:
    """The view's JSON for a package made with :mod:`quorumkeep.crypto.keys` (tests, tools)."""
    return PublicKeyPackageInfo(
        domain_id,
        epoch,
        public.group_public_key,
        public.threshold,
        dict(public.verifying_shares),
    ).to_json()


@dataclass(frozen=True)
class VerifiedShares:
    """Shares checked against the contract: the only form a node imports or a service stores."""

    account: str
    participant_id: int
    keyset: Keyset
    shares: tuple[KeyShare, ...]
    packages: Mapping[int, PublicKeyPackageInfo]

    def __repr__(self) -> str:
        return (
            f"VerifiedShares(account={self.account!r}, participant_id={self.participant_id}, "
            f"epoch={self.keyset.epoch}, domains={list(self.keyset.domain_ids)})"
        )

    def key_packages(self) -> dict[int, tuple[KeyPackage, PublicKeyPackage]]:
        """domain id → (key package, public key package), ready for a node's keystore."""
        out: dict[int, tuple[KeyPackage, PublicKeyPackage]] = {}
        for share in self.shares:
            package = self.packages[share.domain_id]
            public = package.to_crypto()
            out[share.domain_id] = (
                KeyPackage(
                    identifier=share.participant_id,
                    signing_share=share.signing_share,
                    verifying_share=package.verifying_shares[share.participant_id],
                    group_public_key=package.public_key,
                    threshold=package.threshold,
                ),
                public,
            )
        return out


def verify_shares(
    account: str,
    participant_id: int,
    keyset: Keyset,
    shares: Sequence[KeyShare],
    packages: Mapping[int, PublicKeyPackageInfo],
) -> VerifiedShares:
    """Check shares against the contract's current keyset and public key packages.

    Every domain of the keyset must have exactly one share, of the keyset's epoch and of
    ``participant_id``, and ``share·G`` must equal the package's verifying share for that
    participant; every package must be of the keyset's epoch and carry the domain's key.
    Raises ``wrong_epoch`` or ``shares_mismatch`` naming the domain, never a value.
    """
    if not keyset.domains:
        raise BackupProtocolError("shares_mismatch", "the keyset has no domains to hold shares of")
    by_domain: dict[int, KeyShare] = {}
    for share in shares:
        if share.domain_id in by_domain:
            raise BackupProtocolError("shares_mismatch", f"two shares for domain {share.domain_id}")
        by_domain[share.domain_id] = share
    wanted = set(keyset.domain_ids)
    if set(by_domain) != wanted:
        missing = sorted(wanted - set(by_domain))
        extra = sorted(set(by_domain) - wanted)
        raise BackupProtocolError(
            "shares_mismatch",
            f"shares do not cover the keyset (missing domains {missing}, unexpected {extra})",
        )
    for domain in keyset.domains:
        share = by_domain[domain.domain_id]
        if share.epoch != keyset.epoch:
            raise BackupProtocolError(
                "wrong_epoch",
                f"share of domain {domain.domain_id} is of epoch {share.epoch}, "
                f"the contract is at epoch {keyset.epoch}",
            )
        if share.participant_id != participant_id:
            raise BackupProtocolError(
                "shares_mismatch",
                f"share of domain {domain.domain_id} is participant {share.participant_id}'s, "
                f"expected {participant_id}'s",
            )
        package = packages.get(domain.domain_id)
        if package is None or package.domain_id != domain.domain_id:
            raise BackupProtocolError(
                "shares_mismatch", f"no public key package for domain {domain.domain_id}"
            )
        if package.epoch != keyset.epoch or package.public_key != domain.public_key:
            raise BackupProtocolError(
                "wrong_keyset",
                f"the public key package of domain {domain.domain_id} is not the keyset's",
            )
        expected = package.verifying_shares.get(participant_id)
        if expected is None:
            raise BackupProtocolError(
                "shares_mismatch",
                f"domain {domain.domain_id} has no verifying share for participant "
                f"{participant_id}",
            )
        try:
            actual = base_mul(scalar_decode(share.signing_share))
        except InvalidEncoding:
            raise BackupProtocolError(
                "shares_mismatch", f"share of domain {domain.domain_id} is not a scalar"
            ) from None
        if actual != expected:
            raise BackupProtocolError(
                "shares_mismatch",
                f"share of domain {domain.domain_id} does not match participant "
                f"{participant_id}'s verifying share",
            )
    ordered = tuple(by_domain[d] for d in keyset.domain_ids)
    return VerifiedShares(
        account,
        participant_id,
        keyset,
        ordered,
        {d: packages[d] for d in keyset.domain_ids},
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


# --- message fields -------------------------------------------------------------------------
#
# A message declares its fields once, as dataclass fields in wire order whose metadata names
# their kind; its signed statement, its JSON and its parser are all derived from that one
# declaration, so the three cannot disagree about a field. The derived bytes are the layouts of
# docs/backup-protocol.md §3, §6 and §7, pinned by tests/backup/test_backup_wire_golden.py.

StatementValue = bytes | str | int
Reader = Callable[[object, str], object]
"""Checks one JSON value and returns it decoded; the string names the field in the error."""


class _Kind(ABC):
    """How one kind of field is written into JSON and a statement, and read back from JSON."""

    parsed_first = False
    """v1 read the keyset before every other field: a message with several faults must keep
    being refused with the same error."""

    @abstractmethod
    def json_names(self, name: str) -> tuple[str, ...]: ...

    @abstractmethod
    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]: ...

    @abstractmethod
    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]: ...

    @abstractmethod
    def from_json(self, obj: Mapping[str, Any], name: str, what: str) -> object: ...


class _Value(_Kind):
    """One member, one statement field, named after the attribute; bytes are hex in JSON and
    raw in the statement (§2, §3)."""

    def __init__(self, read: Reader) -> None:
        self.read = read

    def json_names(self, name: str) -> tuple[str, ...]:
        return (name,)

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        return [(name, value.hex() if isinstance(value, bytes) else value)]

    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        return [(name, value)]

    def from_json(self, obj: Mapping[str, Any], name: str, what: str) -> object:
        return self.read(obj[name], name)


class _Signature(_Value):
    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        return []  # the statement is what the signature covers: it cannot hold the signature


class _KeysetOfTransfer(_Kind):
    """The keyset shares are of: JSON carries it whole plus its hash, which must agree; the
    statement names it by epoch and hash only, as the associated data does (§5)."""

    parsed_first = True

    def json_names(self, name: str) -> tuple[str, ...]:
        return (name, "keyset_hash")

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        keyset: Keyset = value
        return [(name, keyset.to_json()), ("keyset_hash", keyset.hash.hex())]

    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        keyset: Keyset = value
        return [("epoch", keyset.epoch), ("keyset_hash", keyset.hash)]

    def from_json(self, obj: Mapping[str, Any], name: str, what: str) -> Keyset:
        keyset = Keyset.from_json(obj[name], f"{what} {name}")
        if _keyset_hash(obj["keyset_hash"], "keyset_hash") != keyset.hash:
            raise _malformed(f"{what}: keyset_hash is not the keyset's hash")
        return keyset


_KIND = "quorumkeep.wire.backup kind"
"""The metadata key of a message field's :class:`_Kind`."""


def _kind(kind: _Kind) -> Mapping[str, _Kind]:
    return {_KIND: kind}


# The kinds of field; a message field is declared ``name: type = field(metadata=KIND)``.
_PURPOSE = _kind(_Value(_purpose))
_ACCOUNT = _kind(_Value(_account))
_REGISTERED_KEY = _kind(_Value(_registered_key))
_EPHEMERAL_KEY = _kind(_Value(_x25519_key))
_NONCE = _kind(_Value(_nonce))
_SESSION_ID = _kind(_Value(_session_id))
_KEYSET = _kind(_KeysetOfTransfer())
_KEYSET_HASH = _kind(_Value(_keyset_hash))
_INTEGER = _kind(_Value(_int))
"""Timestamps, expiry times, heights and epochs: non-negative 63-bit integers."""
_CIPHERTEXT = _kind(_Value(_ciphertext))
_SIGNATURE = _kind(_Signature(_signature))


@dataclass(frozen=True)
class _Envelope:
    """What a message carries besides its fields."""

    kind: str
    """The statement's kind (§3)."""
    what: str
    """How parse errors name the message."""
    status: str | None = None
    """A constant after the version, in JSON and first in the statement (the ack's)."""
    signed_order: tuple[str, ...] | None = None
    """The statement's field order where v1 made it differ from the JSON's (the ack's)."""


def _layout(message: type[_Signed]) -> tuple[tuple[str, _Kind], ...]:
    return tuple((f.name, f.metadata[_KIND]) for f in fields(message))


class _Signed:
    """A message whose dataclass fields are declared with kinds; derives its statement.

    Subclasses are frozen dataclasses whose every field has ``metadata=`` one of the kinds
    above, in wire order."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _ENVELOPE: ClassVar[_Envelope]

    def statement(self) -> bytes:
        envelope = self._ENVELOPE
        pairs: list[tuple[str, StatementValue]] = []
        if envelope.status is not None:
            pairs.append(("status", envelope.status))
        for name, kind in _layout(type(self)):
            pairs += kind.signed(name, getattr(self, name))
        if envelope.signed_order is not None:
            values = dict(pairs)
            if set(envelope.signed_order) != set(values):
                raise TypeError(f"{envelope.kind}: signed_order must name every signed field")
            pairs = [(name, values[name]) for name in envelope.signed_order]
        return statement(envelope.kind, pairs)


class _JsonMessage(_Signed):
    """A message sent as a JSON body: ``version`` first, then its fields in declared order."""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"version": PROTOCOL_VERSION}
        if self._ENVELOPE.status is not None:
            document["status"] = self._ENVELOPE.status
        for name, kind in _layout(type(self)):
            document.update(kind.to_json(name, getattr(self, name)))
        return document

    @classmethod
    def from_json(cls, value: object) -> Self:
        envelope = cls._ENVELOPE
        preamble = ("version",) if envelope.status is None else ("version", "status")
        layout = _layout(cls)
        names = [*preamble, *(n for name, kind in layout for n in kind.json_names(name))]
        obj = _object(value, envelope.what, names)
        if obj["version"] != PROTOCOL_VERSION or (
            envelope.status is not None and obj["status"] != envelope.status
        ):
            raise _malformed(f"{envelope.what}: unsupported {' or '.join(preamble)}")
        ordered = sorted(layout, key=lambda item: not item[1].parsed_first)
        return cls(**{name: kind.from_json(obj, name, envelope.what) for name, kind in ordered})


_Message = TypeVar(
    "_Message", "Hello", "BackupResponse", "RecoverySession", "RecoveryPush", "RecoveryAck"
)
_Transfer = TypeVar("_Transfer", "BackupResponse", "RecoveryPush")


def _sign(unsigned: _Message, signer: Signer) -> _Message:
    return replace(unsigned, signature=signer.sign(unsigned.statement()))


# --- hello ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(_Signed):
    """What the backup service sends first, in HTTP headers, signed by its identity key."""

    _ENVELOPE = _Envelope("hello", "hello")

    purpose: Purpose = field(metadata=_PURPOSE)
    account: str = field(metadata=_ACCOUNT)
    node_tls_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    timestamp_ms: int = field(metadata=_INTEGER)
    nonce: bytes = field(metadata=_NONCE)
    signature: bytes = field(default=b"", metadata=_SIGNATURE)

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
            raise _malformed(f"missing header(s): {', '.join(missing)}")
        purpose = _purpose(lowered[H_PURPOSE], H_PURPOSE)
        # A header is text: the timestamp is checked as digits, not as a JSON integer.
        timestamp = lowered[H_TIMESTAMP]
        if not timestamp.isdigit() or len(timestamp) > 16:
            raise _malformed(f"{H_TIMESTAMP}: expected milliseconds since the Unix epoch")
        return cls(
            purpose=purpose,
            account=_account(lowered[H_ACCOUNT], H_ACCOUNT),
            node_tls_public_key=_registered_key(lowered[H_NODE_KEY], H_NODE_KEY),
            service_identity_public_key=_registered_key(lowered[H_SERVICE_KEY], H_SERVICE_KEY),
            service_ephemeral_public_key=_x25519_key(lowered[H_EPHEMERAL_KEY], H_EPHEMERAL_KEY),
            timestamp_ms=int(timestamp),
            nonce=_nonce(lowered[H_NONCE], H_NONCE),
            signature=_signature(lowered[H_SIGNATURE], H_SIGNATURE),
        )

    def verify(self, identity_public_key: bytes) -> None:
        _require_signature(identity_public_key, self.statement(), self.signature, "hello")


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
    return _sign(unsigned, identity)


def check_timestamp(timestamp_ms: int, now_ms: int, what: str = "request") -> None:
    if abs(timestamp_ms - now_ms) > TIMESTAMP_WINDOW_MS:
        raise BackupProtocolError(
            "stale_timestamp",
            f"{what} timestamp is {abs(timestamp_ms - now_ms) / 1000:.1f}s from this clock "
            f"(window ±{TIMESTAMP_WINDOW_MS // 1000}s)",
        )


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
    return _sign(sealed, signer)


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
class BackupResponse(_JsonMessage):
    """The node's answer to a backup hello: its shares sealed to this exchange, signed."""

    _ENVELOPE = _Envelope("backup-response", "backup response")

    account: str = field(metadata=_ACCOUNT)
    node_tls_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_encryption_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    node_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    request_nonce: bytes = field(metadata=_NONCE)
    keyset: Keyset = field(metadata=_KEYSET)
    timestamp_ms: int = field(metadata=_INTEGER)
    ciphertext: bytes = field(metadata=_CIPHERTEXT)
    signature: bytes = field(default=b"", metadata=_SIGNATURE)

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
    _require_signature(node_tls_public_key, response.statement(), response.signature, "node")
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
class RecoverySession(_JsonMessage):
    """The node's answer to a recovery hello: its ephemeral key for this migration, signed."""

    _ENVELOPE = _Envelope("recovery-session", "recovery session")

    account: str = field(metadata=_ACCOUNT)
    node_tls_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    node_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    request_nonce: bytes = field(metadata=_NONCE)
    session_id: bytes = field(metadata=_SESSION_ID)
    migration_started_height: int = field(metadata=_INTEGER)
    expires_at_ms: int = field(metadata=_INTEGER)
    signature: bytes = field(default=b"", metadata=_SIGNATURE)


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
    return _sign(unsigned, node)


def check_recovery_session(
    session: RecoverySession, *, hello: Hello, node_tls_public_key: bytes, now_ms: int
) -> None:
    """The service's side: the session answers ``hello`` and is signed by the destination."""
    _require_signature(node_tls_public_key, session.statement(), session.signature, "node")
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
class RecoveryPush(_JsonMessage):
    """``PUT /backup/keyshares``: the shares sealed to a recovery session, service-signed."""

    _ENVELOPE = _Envelope("recovery-shares", "recovery push")

    account: str = field(metadata=_ACCOUNT)
    node_tls_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_identity_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_encryption_public_key: bytes = field(metadata=_REGISTERED_KEY)
    service_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    node_ephemeral_public_key: bytes = field(metadata=_EPHEMERAL_KEY)
    session_id: bytes = field(metadata=_SESSION_ID)
    keyset: Keyset = field(metadata=_KEYSET)
    timestamp_ms: int = field(metadata=_INTEGER)
    nonce: bytes = field(metadata=_NONCE)
    ciphertext: bytes = field(metadata=_CIPHERTEXT)
    signature: bytes = field(default=b"", metadata=_SIGNATURE)

    def binding(self) -> Binding:
        return _binding(DIRECTION_RECOVERY, self, self.session_id)

    def verify(self, identity_public_key: bytes) -> None:
        _require_signature(identity_public_key, self.statement(), self.signature, "push")


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
class RecoveryAck(_JsonMessage):
    """The node's signed receipt: it verified and imported the shares of this keyset."""

    _ENVELOPE = _Envelope(
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

    account: str = field(metadata=_ACCOUNT)
    node_tls_public_key: bytes = field(metadata=_REGISTERED_KEY)
    session_id: bytes = field(metadata=_SESSION_ID)
    keyset_hash: bytes = field(metadata=_KEYSET_HASH)
    epoch: int = field(metadata=_INTEGER)
    signature: bytes = field(default=b"", metadata=_SIGNATURE)


def make_recovery_ack(push: RecoveryPush, *, node: Signer) -> RecoveryAck:
    unsigned = RecoveryAck(
        push.account, node.public_key, push.session_id, push.keyset.hash, push.keyset.epoch
    )
    return _sign(unsigned, node)


def check_recovery_ack(ack: RecoveryAck, *, push: RecoveryPush) -> None:
    _require_signature(push.node_tls_public_key, ack.statement(), ack.signature, "node")
    if (ack.account, ack.node_tls_public_key, ack.session_id, ack.keyset_hash, ack.epoch) != (
        push.account,
        push.node_tls_public_key,
        push.session_id,
        push.keyset.hash,
        push.keyset.epoch,
    ):
        raise BackupProtocolError("malformed_response", "the node's receipt is for another push")


# --- replay protection on the node ---------------------------------------------------------


class ReplayGuard:
    """Single-use nonces within the timestamp window, in a bounded table.

    A nonce is remembered until its message's timestamp is out of the window (after which
    the timestamp check refuses it anyway), so the table only holds what could still be
    replayed. Only authenticated messages are recorded: an outsider cannot fill it. When
    it is full of live nonces, new messages are refused (``too_many_requests``) rather
    than forgetting one that could then be replayed.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_record(self, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        expiry = timestamp_ms + TIMESTAMP_WINDOW_MS
        for old, old_expiry in list(self._seen.items()):
            if old_expiry < now_ms:
                del self._seen[old]
        if nonce in self._seen:
            raise BackupProtocolError("replay", "this request nonce was already used")
        if len(self._seen) >= self.capacity:
            raise BackupProtocolError(
                "too_many_requests", "too many recent requests; retry in a minute"
            )
        self._seen[nonce] = expiry
