"""The key-provider protocol: deposit and release of storage-key pieces
(docs/key-provider-protocol.md).

Pure: message parsing, signed statements, sealing of pieces and the error codes. The node
(``quorumkeep.node.key_providers``) and the provider service (``quorumkeep.provider``) both
use this module, so the two sides cannot disagree about a byte.

- **Deposit** (node → provider): the piece sealed end-to-end to the provider's registered
  X25519 key from an ephemeral one, the whole request signed by the node's *signer key*.
- **Challenge** (anyone → provider): a fresh single-use provider nonce for an account.
- **Release** (node → provider): signed by the node's *release key* over the provider's
  identity, the account, the epoch, a fresh X25519 key of the requester and the nonce; the
  piece comes back sealed from the provider's registered X25519 key to that fresh key.

Signed byte strings use the statement encoding of docs/backup-protocol.md §3 with their own
kinds (``key-provider deposit v1``, ``key-provider release v1``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from quorumkeep.attest import AttestationError, Evidence, Role, verify_evidence
from quorumkeep.attest.binding import report_data
from quorumkeep.attest.evidence import Measurement
from quorumkeep.attest.policy import TcbPolicy
from quorumkeep.crypto.errors import InvalidEncoding, SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair, open_from, seal_to
from quorumkeep.crypto.storage_split import MAX_HOLDERS, MIN_THRESHOLD, KeyPiece
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.wire.backup.statements import Signer, statement, verify_signature

PROTOCOL_VERSION = 1
DEPOSIT_KIND = "key-provider deposit v1"
RELEASE_KIND = "key-provider release v1"
DEPOSIT_LABEL = "quorumkeep/key-piece-deposit v1"
RELEASE_LABEL = "quorumkeep/key-piece-release v1"
KEY_SIZE = 32
SIGNATURE_SIZE = 64
NONCE_SIZE = 32
PIECE_SIZE = 32
SEALED_PIECE_SIZE = 24 + PIECE_SIZE + 16
TIMESTAMP_WINDOW_MS = 120_000
"""A deposit whose timestamp is further than this from the provider's clock is refused."""
CHALLENGE_LIFETIME_MS = 60_000
MAX_EPOCH = 2**63 - 1

PATH_DEPOSIT = "/v1/deposit"
PATH_CHALLENGE = "/v1/release/challenge"
PATH_RELEASE = "/v1/release"
PATH_STATUS = "/v1/status"

ERROR_STATUS: Mapping[str, int] = {
    "malformed_request": 400,
    "stale_timestamp": 400,
    "decryption_failed": 400,
    "bad_signature": 401,
    "not_participant": 403,
    "wrong_release_key": 403,
    "attestation_required": 403,
    "attestation_invalid": 403,
    "unknown_account": 404,
    "replay": 409,
    "stale_epoch": 409,
    "not_holder": 409,
    "piece_invalid": 422,
    "rate_limited": 429,
    "contract_unavailable": 503,
}
"""Every error code a provider answers with, and its HTTP status."""

CLIENT_CODES = frozenset({"provider_unreachable", "malformed_response", "piece_mismatch"})
"""Codes only the node's side raises (about what a provider answered, or did not)."""


class KeyProviderError(Exception):
    """A refused message. ``code`` is stable; the message is one line and holds no secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split())

    @property
    def status(self) -> int:
        return ERROR_STATUS.get(self.code, 502)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _malformed(message: str) -> KeyProviderError:
    return KeyProviderError("malformed_request", message)


# --- field readers ------------------------------------------------------------------------

_HEX = re.compile(r"[0-9a-f]*")


def read_hex(obj: Mapping[str, Any], name: str, size: int) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise _malformed(f"{name} must be {size} bytes of lowercase hex")
    return bytes.fromhex(value)


def read_int(obj: Mapping[str, Any], name: str, minimum: int, maximum: int) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _malformed(f"{name} must be an integer in [{minimum}, {maximum}]")
    return value


def read_account(obj: Mapping[str, Any], name: str = "account") -> str:
    value = obj.get(name)
    if not is_account_name(value):
        raise _malformed(f"{name} must match {ACCOUNT_PATTERN.pattern}")
    assert isinstance(value, str)
    return value


def check_keys(obj: Any, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _malformed("the body must be a JSON object")
    missing = [k for k in required if k not in obj]
    if missing:
        raise _malformed(f"missing fields: {', '.join(missing)}")
    extra = sorted(set(obj) - set(required) - set(optional))
    if extra:
        raise _malformed(f"unexpected fields: {', '.join(extra[:5])}")
    return obj


def commitment_digest(commitment: Sequence[bytes]) -> bytes:
    """SHA-256 of the concatenated commitment elements (binds a sealed piece to its deal)."""
    return hashlib.sha256(b"".join(commitment)).digest()


# --- deposit ------------------------------------------------------------------------------


def _deposit_binding(
    account: str, epoch: int, index: int, commitment: Sequence[bytes], provider_identity: bytes
) -> dict[str, str | int]:
    return {
        "account": account,
        "epoch": epoch,
        "index": index,
        "commitment": commitment_digest(commitment).hex(),
        "provider": provider_identity.hex(),
    }


@dataclass(frozen=True)
class Deposit:
    """A deposit request as it travels (``sealed_piece`` is ciphertext)."""

    account: str
    epoch: int
    threshold: int
    commitment: tuple[bytes, ...]
    index: int
    signer_public_key: bytes
    release_public_key: bytes
    sender_public_key: bytes
    sealed_piece: bytes
    timestamp_ms: int
    signature: bytes = b""

    def statement(self, provider_identity: bytes) -> bytes:
        return statement(
            DEPOSIT_KIND,
            [
                ("provider", provider_identity),
                ("account", self.account),
                ("epoch", self.epoch),
                ("threshold", self.threshold),
                ("commitment", b"".join(self.commitment)),
                ("index", self.index),
                ("signer_public_key", self.signer_public_key),
                ("release_public_key", self.release_public_key),
                ("sender_public_key", self.sender_public_key),
                ("sealed_piece", self.sealed_piece),
                ("timestamp_ms", self.timestamp_ms),
            ],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "epoch": self.epoch,
            "threshold": self.threshold,
            "commitment": [c.hex() for c in self.commitment],
            "index": self.index,
            "signer_public_key": self.signer_public_key.hex(),
            "release_public_key": self.release_public_key.hex(),
            "sender_public_key": self.sender_public_key.hex(),
            "sealed_piece": self.sealed_piece.hex(),
            "timestamp_ms": self.timestamp_ms,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Deposit:
        obj = check_keys(
            value,
            [
                "account",
                "epoch",
                "threshold",
                "commitment",
                "index",
                "signer_public_key",
                "release_public_key",
                "sender_public_key",
                "sealed_piece",
                "timestamp_ms",
                "signature",
            ],
        )
        threshold = read_int(obj, "threshold", MIN_THRESHOLD, MAX_HOLDERS)
        commitment = obj["commitment"]
        if not isinstance(commitment, list) or len(commitment) != threshold:
            raise _malformed(f"commitment must be a list of {threshold} elements")
        return cls(
            account=read_account(obj),
            epoch=read_int(obj, "epoch", 1, MAX_EPOCH),
            threshold=threshold,
            commitment=tuple(
                read_hex({"commitment": c}, "commitment", KEY_SIZE) for c in commitment
            ),
            index=read_int(obj, "index", 1, MAX_HOLDERS),
            signer_public_key=read_hex(obj, "signer_public_key", KEY_SIZE),
            release_public_key=read_hex(obj, "release_public_key", KEY_SIZE),
            sender_public_key=read_hex(obj, "sender_public_key", KEY_SIZE),
            sealed_piece=read_hex(obj, "sealed_piece", SEALED_PIECE_SIZE),
            timestamp_ms=read_int(obj, "timestamp_ms", 0, MAX_EPOCH),
            signature=read_hex(obj, "signature", SIGNATURE_SIZE),
        )


def make_deposit(
    *,
    account: str,
    epoch: int,
    threshold: int,
    commitment: Sequence[bytes],
    piece: KeyPiece,
    signer: Signer,
    release_public_key: bytes,
    provider_identity: bytes,
    provider_encryption: bytes,
    now_ms: int,
    random_bytes: RandomBytes,
) -> Deposit:
    """A signed deposit of ``piece`` for the provider with these registered keys."""
    ephemeral = KxKeyPair.generate(random_bytes)
    sealed = seal_to(
        ephemeral,
        provider_encryption,
        piece.value,
        label=DEPOSIT_LABEL,
        binding=_deposit_binding(account, epoch, piece.index, commitment, provider_identity),
        random_bytes=random_bytes,
    )
    unsigned = Deposit(
        account,
        epoch,
        threshold,
        tuple(commitment),
        piece.index,
        signer.public_key,
        release_public_key,
        ephemeral.public_key,
        sealed,
        now_ms,
    )
    signature = signer.sign(unsigned.statement(provider_identity))
    return replace(unsigned, signature=signature)


def open_deposit(deposit: Deposit, provider: KxKeyPair, provider_identity: bytes) -> KeyPiece:
    """The piece inside a deposit (after its signature was checked); ``decryption_failed``
    if it was not sealed to this provider for exactly these fields."""
    try:
        value = open_from(
            provider,
            deposit.sender_public_key,
            deposit.sealed_piece,
            label=DEPOSIT_LABEL,
            binding=_deposit_binding(
                deposit.account, deposit.epoch, deposit.index, deposit.commitment, provider_identity
            ),
        )
        return KeyPiece(deposit.index, value)
    except (SealError, InvalidEncoding):
        raise KeyProviderError("decryption_failed", "the sealed piece does not open") from None


def check_deposit_signature(deposit: Deposit, provider_identity: bytes) -> None:
    if not verify_signature(
        deposit.signer_public_key, deposit.statement(provider_identity), deposit.signature
    ):
        raise KeyProviderError("bad_signature", "the deposit is not signed by its signer key")


# --- challenge and release ----------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseRequest:
    account: str
    epoch: int
    release_public_key: bytes
    requester_public_key: bytes
    nonce: bytes
    signature: bytes = b""
    attestation: Any = None

    def statement(self, provider_identity: bytes) -> bytes:
        return statement(
            RELEASE_KIND,
            [
                ("provider", provider_identity),
                ("account", self.account),
                ("epoch", self.epoch),
                ("release_public_key", self.release_public_key),
                ("requester_public_key", self.requester_public_key),
                ("nonce", self.nonce),
            ],
        )

    def to_json(self) -> dict[str, Any]:
        body = {
            "account": self.account,
            "epoch": self.epoch,
            "release_public_key": self.release_public_key.hex(),
            "requester_public_key": self.requester_public_key.hex(),
            "nonce": self.nonce.hex(),
            "signature": self.signature.hex(),
        }
        if self.attestation is not None:
            body["attestation"] = self.attestation
        return body

    @classmethod
    def from_json(cls, value: Any) -> ReleaseRequest:
        obj = check_keys(
            value,
            [
                "account",
                "epoch",
                "release_public_key",
                "requester_public_key",
                "nonce",
                "signature",
            ],
            ["attestation"],
        )
        return cls(
            account=read_account(obj),
            epoch=read_int(obj, "epoch", 1, MAX_EPOCH),
            release_public_key=read_hex(obj, "release_public_key", KEY_SIZE),
            requester_public_key=read_hex(obj, "requester_public_key", KEY_SIZE),
            nonce=read_hex(obj, "nonce", NONCE_SIZE),
            signature=read_hex(obj, "signature", SIGNATURE_SIZE),
            attestation=obj.get("attestation"),
        )


def make_release_request(
    *,
    account: str,
    epoch: int,
    release_signer: Signer,
    requester: KxKeyPair,
    nonce: bytes,
    provider_identity: bytes,
) -> ReleaseRequest:
    unsigned = ReleaseRequest(
        account, epoch, release_signer.public_key, requester.public_key, nonce
    )
    signature = release_signer.sign(unsigned.statement(provider_identity))
    return ReleaseRequest(
        account, epoch, release_signer.public_key, requester.public_key, nonce, signature
    )


def check_release_signature(request: ReleaseRequest, provider_identity: bytes) -> None:
    if not verify_signature(
        request.release_public_key, request.statement(provider_identity), request.signature
    ):
        raise KeyProviderError("bad_signature", "the release request is not signed by its key")


def _release_binding(account: str, epoch: int, index: int, nonce: bytes) -> dict[str, str | int]:
    return {"account": account, "epoch": epoch, "index": index, "nonce": nonce.hex()}


@dataclass(frozen=True)
class Release:
    """A provider's answer: the piece sealed to the requester's fresh key."""

    account: str
    epoch: int
    index: int
    sealed_piece: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "epoch": self.epoch,
            "index": self.index,
            "sealed_piece": self.sealed_piece.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Release:
        try:
            obj = check_keys(value, ["account", "epoch", "index", "sealed_piece"])
            return cls(
                read_account(obj),
                read_int(obj, "epoch", 1, MAX_EPOCH),
                read_int(obj, "index", 1, MAX_HOLDERS),
                read_hex(obj, "sealed_piece", SEALED_PIECE_SIZE),
            )
        except KeyProviderError as exc:
            raise KeyProviderError("malformed_response", exc.message) from None


def seal_release(
    request: ReleaseRequest, piece: KeyPiece, provider: KxKeyPair, random_bytes: RandomBytes
) -> Release:
    sealed = seal_to(
        provider,
        request.requester_public_key,
        piece.value,
        label=RELEASE_LABEL,
        binding=_release_binding(request.account, request.epoch, piece.index, request.nonce),
        random_bytes=random_bytes,
    )
    return Release(request.account, request.epoch, piece.index, sealed)


def open_release(
    release: Release,
    request: ReleaseRequest,
    requester: KxKeyPair,
    provider_encryption: bytes,
    expected_index: int,
) -> KeyPiece:
    """The piece a provider released, opened with the fresh key and checked to come from the
    provider's registered encryption key for this very request (account, epoch, nonce)."""
    if (release.account, release.epoch) != (request.account, request.epoch):
        raise KeyProviderError("malformed_response", "the release names another account or epoch")
    if release.index != expected_index:
        raise KeyProviderError(
            "piece_mismatch", f"the release is for index {release.index}, not {expected_index}"
        )
    try:
        value = open_from(
            requester,
            provider_encryption,
            release.sealed_piece,
            label=RELEASE_LABEL,
            binding=_release_binding(request.account, request.epoch, release.index, request.nonce),
        )
        return KeyPiece(release.index, value)
    except (SealError, InvalidEncoding):
        raise KeyProviderError(
            "piece_mismatch", "the released piece does not open under the provider's key"
        ) from None


# --- attestation of a release -------------------------------------------------------------

RELEASE_BINDING_PREFIX = b"quorumkeep key release v1\x00"


def release_binding(request: ReleaseRequest) -> bytes:
    """The 32-byte second key a release quote binds: SHA-256 of the prefix, the provider's
    nonce, the release key and the account — so a quote is good for one request only."""
    return hashlib.sha256(
        RELEASE_BINDING_PREFIX
        + request.nonce
        + request.release_public_key
        + request.account.encode("utf-8")
    ).digest()


def release_report_data(request: ReleaseRequest) -> bytes:
    """report_data of a release quote: role node, the requester's fresh X25519 key, and
    :func:`release_binding` (docs/attestation.md's layout, docs/key-provider-protocol.md §4)."""
    return report_data(Role.NODE, request.requester_public_key, release_binding(request))


def check_release_attestation(request: ReleaseRequest, policy: Any, now: int) -> str:
    """Verify a release's attestation against the contract's policy (the
    ``attestation_policy`` view): quote valid at ``now`` under its development key and TCB
    policy, report_data binding this request, measurement on the node allow-list. Returns
    the measurement id; ``attestation_required`` / ``attestation_invalid`` otherwise."""
    if request.attestation is None:
        raise KeyProviderError("attestation_required", "the release carries no attestation")
    if not isinstance(policy, dict):
        raise KeyProviderError(
            "attestation_required", "the contract has no attestation policy to check it against"
        )
    try:
        dev_key = policy.get("dev_platform_public_key")
        tcb = policy["tcb_policy"]
        tcb_policy = TcbPolicy(frozenset(tcb["statuses"]), frozenset(tcb.get("advisory_ids", [])))
        allowed = {
            Measurement.from_json(m).measurement_id
            for m in policy["allowed_measurements"].get(Role.NODE.value, [])
        }
        evidence = Evidence.from_json(request.attestation)
        attested = verify_evidence(
            evidence,
            Role.NODE,
            request.requester_public_key,
            release_binding(request),
            now,
            None if dev_key is None else bytes.fromhex(dev_key),
            tcb_policy,
        )
    except AttestationError as exc:
        raise KeyProviderError("attestation_invalid", f"[{exc.code}] {exc.message}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise KeyProviderError("attestation_invalid", "the attestation is malformed") from None
    measurement_id = attested.measurement.measurement_id
    if measurement_id not in allowed:
        raise KeyProviderError(
            "attestation_invalid", f"measurement {measurement_id} is not on the node allow-list"
        )
    return measurement_id
