"""The typed protocol messages nodes exchange over the mesh, and their one codec.

Every message is one mesh MESSAGE frame (docs/mesh.md) on the channel of its protocol
(``dkg``, ``reshare``, ``presign``, ``sign``); the payload is a UTF-8 JSON object::

    {"type": "<message type>", "session": "<session id>", <the type's fields>}

Full formats: docs/node-protocols.md. Decoding is strict: the object must hold exactly the
type's keys (no duplicates), integers are JSON integers (never booleans or floats), bytes are
lowercase hex of the exact size, identifiers are in [1, 2^63), lists are sorted where the
format says so. Anything else raises :class:`MessageError` (code ``invalid_message``), whose
one-line message names the field, never its value (some fields are secret shares).

Group elements inside signing messages are only size-checked here: ``crypto.frost`` validates
every element it uses, and validating twice would double the cost of the hot path. The
packages of key generation and resharing are rare and decoded by ``crypto``'s own validating
decoders.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from quorumkeep.crypto import frost
from quorumkeep.crypto.dkg import Round1Package, Round2Package
from quorumkeep.crypto.errors import CryptoError, InvalidEncoding
from quorumkeep.crypto.group import (
    ELEMENT_SIZE,
    SCALAR_SIZE,
    Element,
    Scalar,
    base_mul,
    element_decode,
)
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.crypto.reshare import ResharePublicPackage, SubShare

CHANNEL_DKG = "dkg"
CHANNEL_RESHARE = "reshare"
CHANNEL_PRESIGN = "presign"
CHANNEL_SIGN = "sign"
CHANNELS = frozenset({CHANNEL_DKG, CHANNEL_RESHARE, CHANNEL_PRESIGN, CHANNEL_SIGN})

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""Largest payload the codec decodes (a presignature batch for 64 signers of 64 ids fits)."""
MAX_ID = 2**63 - 1
"""Participant ids, domain ids, epochs and request ids are contract integers: < 2^63."""
MAX_BATCH = 64
"""Most presignatures one batch request may ask for."""
MAX_REASON = 200
MAX_PATH = 256
MAX_CALLER = 256
MAX_PAYLOAD = 4096
HASH_SIZE = 32
NONCE_PAIR_SIZE = 2 * ELEMENT_SIZE

_SESSION_ID = re.compile(r"[!-~]{1,128}")
_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")


class MessageError(ValueError):
    """A payload that is not a valid protocol message. Never carries field values."""

    code = "invalid_message"


# --- field helpers ---------------------------------------------------------------------


def check_session_id(value: object) -> str:
    """Session ids: 1..128 printable ASCII characters without spaces."""
    if not isinstance(value, str) or not _SESSION_ID.fullmatch(value):
        raise MessageError("session: expected 1..128 printable ASCII characters, no spaces")
    return value


def _int(value: object, what: str, minimum: int = 0, maximum: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise MessageError(f"{what}: expected an integer in [{minimum}, {maximum}]")
    return value


def _participant(value: object, what: str) -> int:
    return _int(value, what, 1)


def _str(value: object, what: str, maximum: int, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{what}: expected a string")
    if len(value) > maximum or (not value and not allow_empty):
        raise MessageError(f"{what}: expected {0 if allow_empty else 1}..{maximum} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError(f"{what}: not valid Unicode text") from None
    return value


def _hex(value: object, what: str, size: int | None = None, *, maximum: int = 0) -> bytes:
    """Lowercase hex; exactly ``size`` bytes, or a multiple of nothing up to ``maximum``."""
    if not isinstance(value, str):
        raise MessageError(f"{what}: expected a hex string")
    if size is not None and len(value) != 2 * size:
        raise MessageError(f"{what}: expected {2 * size} hex digits")
    if size is None and (len(value) % 2 or len(value) > 2 * maximum):
        raise MessageError(f"{what}: expected an even number of hex digits, at most {2 * maximum}")
    if value != value.lower():
        raise MessageError(f"{what}: hex must be lowercase")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MessageError(f"{what}: not a hex string") from None


def _list(value: object, what: str, maximum: int) -> list[object]:
    if not isinstance(value, list):
        raise MessageError(f"{what}: expected a list")
    if len(value) > maximum:
        raise MessageError(f"{what}: more than {maximum} items")
    return value


def _ascending_ids(value: object, what: str, maximum: int = 0xFFFF) -> tuple[int, ...]:
    ids = tuple(_participant(v, f"{what}[{k}]") for k, v in enumerate(_list(value, what, maximum)))
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise MessageError(f"{what}: identifiers must be strictly ascending")
    return ids


def _id_map(value: object, what: str, size: int | None, maximum: int = 0) -> dict[int, bytes]:
    """``[[id, hex], ...]`` with strictly ascending ids."""
    out: dict[int, bytes] = {}
    previous = 0
    for k, entry in enumerate(_list(value, what, 0xFFFF)):
        if not isinstance(entry, list) or len(entry) != 2:
            raise MessageError(f"{what}[{k}]: expected [identifier, hex]")
        identifier = _participant(entry[0], f"{what}[{k}] identifier")
        if identifier <= previous:
            raise MessageError(f"{what}: identifiers must be strictly ascending")
        out[identifier] = _hex(entry[1], f"{what}[{k}]", size, maximum=maximum)
        previous = identifier
    return out


def _id_map_to_json(values: Mapping[int, bytes]) -> list[list[object]]:
    return [[identifier, values[identifier].hex()] for identifier in sorted(values)]


def _crypto(decode: Any, value: object, what: str) -> Any:
    """Run one of crypto's validating decoders, turning its error into a MessageError."""
    try:
        return decode(value)
    except (CryptoError, ValueError) as exc:
        raise MessageError(f"{what}: {exc}") from None


# --- public key packages ---------------------------------------------------------------


def public_key_package_to_dict(public: PublicKeyPackage) -> dict[str, object]:
    return {
        "group_public_key": public.group_public_key.hex(),
        "threshold": public.threshold,
        "verifying_shares": _id_map_to_json(public.verifying_shares),
    }


def public_key_package_from_dict(obj: object, what: str = "public key package") -> PublicKeyPackage:
    """Strict and validating: every element canonical, in the subgroup, not the identity."""
    if not isinstance(obj, Mapping) or set(obj) != {
        "group_public_key",
        "threshold",
        "verifying_shares",
    }:
        raise MessageError(f"{what}: expected group_public_key, threshold, verifying_shares")
    group_public_key = _crypto(
        element_decode, _hex(obj["group_public_key"], what, ELEMENT_SIZE), f"{what}: group key"
    )
    shares = _id_map(obj["verifying_shares"], f"{what}: verifying_shares", ELEMENT_SIZE)
    for identifier, share in shares.items():
        _crypto(element_decode, share, f"{what}: verifying share of {identifier}")
    threshold = _int(obj["threshold"], f"{what}: threshold", 1, max(1, len(shares)))
    return PublicKeyPackage(group_public_key, shares, threshold)


def public_key_package_to_bytes(public: PublicKeyPackage) -> bytes:
    """u16 threshold ‖ u16 n ‖ (u64 id ‖ verifying share)* ascending ‖ group key."""
    ids = sorted(public.verifying_shares)
    return b"".join(
        [
            public.threshold.to_bytes(2, "big"),
            len(ids).to_bytes(2, "big"),
            *(i.to_bytes(8, "big") + public.verifying_shares[i] for i in ids),
            public.group_public_key,
        ]
    )


def public_key_package_from_bytes(data: bytes) -> PublicKeyPackage:
    """Inverse of :func:`public_key_package_to_bytes`, validating every element."""
    what = "public key package"
    if len(data) < 4:
        raise MessageError(f"{what}: truncated")
    threshold = int.from_bytes(data[:2], "big")
    n = int.from_bytes(data[2:4], "big")
    entry = 8 + ELEMENT_SIZE
    if len(data) != 4 + n * entry + ELEMENT_SIZE:
        raise MessageError(f"{what}: wrong length for {n} participants")
    shares: dict[int, Element] = {}
    previous = 0
    for k in range(n):
        offset = 4 + k * entry
        identifier = int.from_bytes(data[offset : offset + 8], "big")
        if not previous < identifier <= MAX_ID:
            raise MessageError(f"{what}: identifiers must be ascending in [1, 2^63)")
        shares[identifier] = _crypto(
            element_decode, data[offset + 8 : offset + entry], f"{what}: verifying share"
        )
        previous = identifier
    if not 1 <= threshold <= max(1, n):
        raise MessageError(f"{what}: threshold out of range")
    group_public_key = _crypto(element_decode, data[-ELEMENT_SIZE:], f"{what}: group key")
    return PublicKeyPackage(group_public_key, shares, threshold)


def public_key_package_hash(public: PublicKeyPackage) -> bytes:
    """SHA-256 of the byte encoding under a domain tag: what participants echo to agree."""
    return hashlib.sha256(
        b"quorumkeep public key package v1\x00" + public_key_package_to_bytes(public)
    ).digest()


def key_package_from_share(
    identifier: int, signing_share: Scalar, public: PublicKeyPackage
) -> KeyPackage:
    """Rebuild a KeyPackage from a stored share and its public package (checked to match)."""
    verifying_share = public.verifying_shares.get(identifier)
    if verifying_share is None:
        raise MessageError(f"participant {identifier} has no verifying share in the package")
    if len(signing_share) != SCALAR_SIZE or base_mul(signing_share) != verifying_share:
        raise MessageError(f"the share does not match participant {identifier}'s verifying share")
    return KeyPackage(
        identifier=identifier,
        signing_share=signing_share,
        verifying_share=verifying_share,
        group_public_key=public.group_public_key,
        threshold=public.threshold,
    )


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every protocol message; ``session`` routes it (sessions.SessionRouter)."""

    TYPE: ClassVar[str] = ""
    CHANNELS: ClassVar[frozenset[str]] = frozenset()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    session: str

    def fields(self) -> dict[str, object]:
        return {}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> Message:
        return cls(session)


_M = TypeVar("_M", bound=type[Message])
_REGISTRY: dict[str, type[Message]] = {}


def _register(cls: _M) -> _M:
    if cls.TYPE in _REGISTRY:
        raise RuntimeError(f"duplicate message type {cls.TYPE}")
    _REGISTRY[cls.TYPE] = cls
    return cls


# -- shared


@_register
@dataclass(frozen=True, slots=True)
class SessionAbort(Message):
    """A participant gives up on a DKG or resharing session, and says why (and whom)."""

    TYPE = "abort"
    CHANNELS = frozenset({CHANNEL_DKG, CHANNEL_RESHARE})
    FIELDS = ("culprit", "reason")

    culprit: int | None
    reason: str

    def fields(self) -> dict[str, object]:
        return {"culprit": self.culprit, "reason": self.reason[:MAX_REASON]}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> SessionAbort:
        culprit = obj["culprit"]
        return cls(
            session,
            None if culprit is None else _participant(culprit, "culprit"),
            _str(obj["reason"], "reason", MAX_REASON),
        )


@_register
@dataclass(frozen=True, slots=True)
class Refusal(Message):
    """A member declines a presignature or signing request; ``code`` is stable."""

    TYPE = "refusal"
    CHANNELS = frozenset({CHANNEL_PRESIGN, CHANNEL_SIGN})
    FIELDS = ("code", "reason")

    code: str
    reason: str

    def fields(self) -> dict[str, object]:
        return {"code": self.code, "reason": self.reason[:MAX_REASON]}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> Refusal:
        code = obj["code"]
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise MessageError("code: expected a lowercase identifier")
        return cls(session, code, _str(obj["reason"], "reason", MAX_REASON))


# -- key generation (protocols/dkg.py)


@_register
@dataclass(frozen=True, slots=True)
class DkgRound1(Message):
    TYPE = "dkg_round1"
    CHANNELS = frozenset({CHANNEL_DKG})
    FIELDS = ("package",)

    package: Round1Package

    def fields(self) -> dict[str, object]:
        return {"package": self.package.to_dict()}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> DkgRound1:
        return cls(session, _crypto(Round1Package.from_dict, obj["package"], "package"))


@_register
@dataclass(frozen=True, slots=True)
class DkgEcho(Message):
    """SHA-256 of every round-1 package as its sender saw it (dkg.round1_hash)."""

    TYPE = "dkg_echo"
    CHANNELS = frozenset({CHANNEL_DKG})
    FIELDS = ("hashes",)

    hashes: Mapping[int, bytes]

    def fields(self) -> dict[str, object]:
        return {"hashes": _id_map_to_json(self.hashes)}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> DkgEcho:
        return cls(session, _id_map(obj["hashes"], "hashes", HASH_SIZE))


@_register
@dataclass(frozen=True, slots=True)
class DkgRound2(Message):
    """The secret share f_i(j); travels only inside the mesh's TLS 1.3 connection."""

    TYPE = "dkg_round2"
    CHANNELS = frozenset({CHANNEL_DKG})
    FIELDS = ("share",)

    share: Round2Package = field(repr=False)

    def fields(self) -> dict[str, object]:
        return {"share": self.share.signing_share.hex()}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> DkgRound2:
        return cls(
            session, _crypto(Round2Package.from_bytes, _hex(obj["share"], "share", 32), "share")
        )


@_register
@dataclass(frozen=True, slots=True)
class DkgConfirm(Message):
    TYPE = "dkg_confirm"
    CHANNELS = frozenset({CHANNEL_DKG})
    FIELDS = ("public_key_package_hash",)

    public_key_package_hash: bytes

    def fields(self) -> dict[str, object]:
        return {"public_key_package_hash": self.public_key_package_hash.hex()}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> DkgConfirm:
        return cls(
            session, _hex(obj["public_key_package_hash"], "public_key_package_hash", HASH_SIZE)
        )


# -- resharing (protocols/reshare.py)


@_register
@dataclass(frozen=True, slots=True)
class ReshareReady(Message):
    """An old holder is live and holds its share: it can deal."""

    TYPE = "reshare_ready"
    CHANNELS = frozenset({CHANNEL_RESHARE})


@_register
@dataclass(frozen=True, slots=True)
class ReshareDealers(Message):
    """The leader's choice of dealers, with the old public key package newcomers need."""

    TYPE = "reshare_dealers"
    CHANNELS = frozenset({CHANNEL_RESHARE})
    FIELDS = ("dealers", "old_public")

    dealers: tuple[int, ...]
    old_public: PublicKeyPackage

    def fields(self) -> dict[str, object]:
        return {
            "dealers": list(self.dealers),
            "old_public": public_key_package_to_dict(self.old_public),
        }

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> ReshareDealers:
        return cls(
            session,
            _ascending_ids(obj["dealers"], "dealers"),
            public_key_package_from_dict(obj["old_public"], "old_public"),
        )


@_register
@dataclass(frozen=True, slots=True)
class ReshareDeal(Message):
    """A dealer's public package and the receiver's secret sub-share, in one message."""

    TYPE = "reshare_deal"
    CHANNELS = frozenset({CHANNEL_RESHARE})
    FIELDS = ("package", "sub_share")

    package: ResharePublicPackage
    sub_share: SubShare = field(repr=False)

    def fields(self) -> dict[str, object]:
        return {"package": self.package.to_dict(), "sub_share": self.sub_share.value.hex()}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> ReshareDeal:
        return cls(
            session,
            _crypto(ResharePublicPackage.from_dict, obj["package"], "package"),
            _crypto(SubShare.from_bytes, _hex(obj["sub_share"], "sub_share", 32), "sub_share"),
        )


@_register
@dataclass(frozen=True, slots=True)
class ReshareConfirm(Message):
    """A receiver's view: the new public package's hash and every dealer package's hash."""

    TYPE = "reshare_confirm"
    CHANNELS = frozenset({CHANNEL_RESHARE})
    FIELDS = ("public_key_package_hash", "packages")

    public_key_package_hash: bytes
    packages: Mapping[int, bytes]

    def fields(self) -> dict[str, object]:
        return {
            "public_key_package_hash": self.public_key_package_hash.hex(),
            "packages": _id_map_to_json(self.packages),
        }

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> ReshareConfirm:
        return cls(
            session,
            _hex(obj["public_key_package_hash"], "public_key_package_hash", HASH_SIZE),
            _id_map(obj["packages"], "packages", HASH_SIZE),
        )


# -- presignatures (protocols/presign.py)


@_register
@dataclass(frozen=True, slots=True)
class PresignRequest(Message):
    """The owner asks a member for ``count`` nonce commitments (ids ``<session>:<k>``)."""

    TYPE = "presign_request"
    CHANNELS = frozenset({CHANNEL_PRESIGN})
    FIELDS = ("domain_id", "epoch", "participants", "count")

    domain_id: int
    epoch: int
    participants: tuple[int, ...]
    count: int

    def fields(self) -> dict[str, object]:
        return {
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "participants": list(self.participants),
            "count": self.count,
        }

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> PresignRequest:
        return cls(
            session,
            _int(obj["domain_id"], "domain_id"),
            _int(obj["epoch"], "epoch"),
            _ascending_ids(obj["participants"], "participants", 1024),
            _int(obj["count"], "count", 1, MAX_BATCH),
        )


def _commitments_to_hex(commitments: Sequence[frost.SigningCommitments]) -> str:
    return b"".join(c.hiding + c.binding for c in commitments).hex()


def split_commitments(data: bytes) -> tuple[frost.SigningCommitments, ...]:
    """count × (hiding ‖ binding) → SigningCommitments (sizes only; frost validates points)."""
    return tuple(
        frost.SigningCommitments(
            data[k : k + ELEMENT_SIZE], data[k + ELEMENT_SIZE : k + NONCE_PAIR_SIZE]
        )
        for k in range(0, len(data), NONCE_PAIR_SIZE)
    )


def _commitment_run(value: object, what: str) -> tuple[frost.SigningCommitments, ...]:
    data = _hex(value, what, maximum=MAX_BATCH * NONCE_PAIR_SIZE)
    if not data or len(data) % NONCE_PAIR_SIZE:
        raise MessageError(f"{what}: expected 1..{MAX_BATCH} pairs of 32-byte commitments")
    return split_commitments(data)


@_register
@dataclass(frozen=True, slots=True)
class PresignCommitments(Message):
    """A member's commitments for the batch, in id order."""

    TYPE = "presign_commitments"
    CHANNELS = frozenset({CHANNEL_PRESIGN})
    FIELDS = ("commitments",)

    commitments: tuple[frost.SigningCommitments, ...]

    def fields(self) -> dict[str, object]:
        return {"commitments": _commitments_to_hex(self.commitments)}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> PresignCommitments:
        return cls(session, _commitment_run(obj["commitments"], "commitments"))


@_register
@dataclass(frozen=True, slots=True)
class PresignConfirm(Message):
    """Every participant's commitments for the batch: members store them with their nonces."""

    TYPE = "presign_confirm"
    CHANNELS = frozenset({CHANNEL_PRESIGN})
    FIELDS = ("commitments",)

    commitments: Mapping[int, tuple[frost.SigningCommitments, ...]]

    def fields(self) -> dict[str, object]:
        return {
            "commitments": [
                [p, _commitments_to_hex(self.commitments[p])] for p in sorted(self.commitments)
            ]
        }

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> PresignConfirm:
        raw = _id_map(obj["commitments"], "commitments", None, MAX_BATCH * NONCE_PAIR_SIZE)
        out: dict[int, tuple[frost.SigningCommitments, ...]] = {}
        for participant, data in raw.items():
            if not data or len(data) % NONCE_PAIR_SIZE:
                raise MessageError("commitments: expected pairs of 32-byte commitments")
            out[participant] = split_commitments(data)
        if len({len(v) for v in out.values()}) > 1:
            raise MessageError("commitments: participants carry different counts")
        return cls(session, out)


@_register
@dataclass(frozen=True, slots=True)
class PresignStored(Message):
    """A member stored its nonces for the batch, sealed and durable."""

    TYPE = "presign_stored"
    CHANNELS = frozenset({CHANNEL_PRESIGN})


# -- signing (protocols/sign.py)


@_register
@dataclass(frozen=True, slots=True)
class SignShareRequest(Message):
    """The leader asks a member for its signature share; ``session`` is the presignature id."""

    TYPE = "sign_request"
    CHANNELS = frozenset({CHANNEL_SIGN})
    FIELDS = ("request_id", "domain_id", "epoch", "payload", "path", "caller", "commitments")

    request_id: int
    domain_id: int
    epoch: int
    payload: bytes
    path: str
    caller: str
    commitments: tuple[frost.CommitmentListEntry, ...]

    def fields(self) -> dict[str, object]:
        return {
            "request_id": self.request_id,
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "payload": self.payload.hex(),
            "path": self.path,
            "caller": self.caller,
            "commitments": [[i, h.hex(), b.hex()] for i, h, b in self.commitments],
        }

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> SignShareRequest:
        entries: list[frost.CommitmentListEntry] = []
        previous = 0
        for k, entry in enumerate(_list(obj["commitments"], "commitments", 1024)):
            if not isinstance(entry, list) or len(entry) != 3:
                raise MessageError(f"commitments[{k}]: expected [identifier, hiding, binding]")
            identifier = _participant(entry[0], f"commitments[{k}] identifier")
            if identifier <= previous:
                raise MessageError("commitments: identifiers must be strictly ascending")
            entries.append(
                (
                    identifier,
                    _hex(entry[1], f"commitments[{k}] hiding", ELEMENT_SIZE),
                    _hex(entry[2], f"commitments[{k}] binding", ELEMENT_SIZE),
                )
            )
            previous = identifier
        if not entries:
            raise MessageError("commitments: empty")
        return cls(
            session,
            _int(obj["request_id"], "request_id"),
            _int(obj["domain_id"], "domain_id"),
            _int(obj["epoch"], "epoch"),
            _hex(obj["payload"], "payload", maximum=MAX_PAYLOAD),
            _str(obj["path"], "path", MAX_PATH),
            _str(obj["caller"], "caller", MAX_CALLER, allow_empty=False),
            tuple(entries),
        )


@_register
@dataclass(frozen=True, slots=True)
class SignShare(Message):
    TYPE = "sign_share"
    CHANNELS = frozenset({CHANNEL_SIGN})
    FIELDS = ("share",)

    share: Scalar

    def fields(self) -> dict[str, object]:
        return {"share": self.share.hex()}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> SignShare:
        # canonicity is checked by frost.aggregate, which names the sender if it fails
        return cls(session, _hex(obj["share"], "share", SCALAR_SIZE))


MESSAGE_TYPES: Mapping[str, type[Message]] = dict(_REGISTRY)


# --- the codec -------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MessageError(f"duplicate key {key!r}"[:80])
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise MessageError("NaN and Infinity are not JSON")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def encode(message: Message) -> bytes:
    """The message's payload bytes: compact JSON, ASCII only."""
    obj: dict[str, object] = {"type": message.TYPE, "session": message.session}
    obj.update(message.fields())
    return _ENCODER.encode(obj).encode("ascii")


def decode(channel: str, payload: bytes) -> Message:
    """Strictly decode a payload received on ``channel``; MessageError for anything wrong."""
    if len(payload) > MAX_MESSAGE_SIZE:
        raise MessageError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_SIZE}")
    try:
        obj = json.loads(payload, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except MessageError:
        raise
    except (ValueError, RecursionError):
        raise MessageError("not a JSON document") from None
    if not isinstance(obj, dict):
        raise MessageError("expected a JSON object")
    kind = obj.get("type")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError("unknown message type")
    if channel not in cls.CHANNELS:
        raise MessageError(f"message type {cls.TYPE} is not allowed on channel {channel[:32]!r}")
    expected = {"type", "session", *cls.FIELDS}
    if set(obj) != expected:
        missing = sorted(expected - set(obj))
        unknown = sorted(str(k)[:32] for k in set(obj) - expected)[:5]
        raise MessageError(f"{cls.TYPE}: missing keys {missing}, unknown keys {unknown}")
    session = check_session_id(obj["session"])
    try:
        return cls.from_fields(session, obj)
    except MessageError as exc:
        raise MessageError(f"{cls.TYPE}: {exc}") from None
    except InvalidEncoding as exc:  # pragma: no cover - _crypto converts these already
        raise MessageError(f"{cls.TYPE}: {exc}") from None
