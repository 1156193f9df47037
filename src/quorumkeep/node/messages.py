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
from quorumkeep.encoding.fields import decode_hex, key_diff
from quorumkeep.encoding.json import JsonError, parse_json
from quorumkeep.encoding.records import kind, layout

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
        return decode_hex(value)
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


# --- field kinds ---------------------------------------------------------------------------
#
# A message declares its fields once, as dataclass fields in wire order whose metadata names
# their kind (quorumkeep.encoding.records, the codec of the contract's records and the backup
# protocol too); its JSON members and its strict reader are derived from that declaration.


def _reader(read: Any, *args: Any, **kwargs: Any) -> Any:
    return lambda value, what: read(value, what, *args, **kwargs)


def _crypto_reader(decode: Any) -> Any:
    return lambda value, what: _crypto(decode, value, what)


def _culprit(value: object, what: str) -> int | None:
    return None if value is None else _participant(value, what)


def _code(value: object, what: str) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise MessageError(f"{what}: expected a lowercase identifier")
    return value


def _secret_hex(decode: Any) -> Any:
    """A 32-byte secret (share, sub-share) as hex, decoded by crypto's validating decoder."""
    return lambda value, what: _crypto(decode, _hex(value, what, 32), what)


def _presign_confirm(value: object, what: str) -> dict[int, tuple[frost.SigningCommitments, ...]]:
    raw = _id_map(value, what, None, MAX_BATCH * NONCE_PAIR_SIZE)
    out: dict[int, tuple[frost.SigningCommitments, ...]] = {}
    for participant, data in raw.items():
        if not data or len(data) % NONCE_PAIR_SIZE:
            raise MessageError(f"{what}: expected pairs of 32-byte commitments")
        out[participant] = split_commitments(data)
    if len({len(v) for v in out.values()}) > 1:
        raise MessageError(f"{what}: participants carry different counts")
    return out


def _commitment_list(value: object, what: str) -> tuple[frost.CommitmentListEntry, ...]:
    entries: list[frost.CommitmentListEntry] = []
    previous = 0
    for k, entry in enumerate(_list(value, what, 1024)):
        if not isinstance(entry, list) or len(entry) != 3:
            raise MessageError(f"{what}[{k}]: expected [identifier, hiding, binding]")
        identifier = _participant(entry[0], f"{what}[{k}] identifier")
        if identifier <= previous:
            raise MessageError(f"{what}: identifiers must be strictly ascending")
        entries.append(
            (
                identifier,
                _hex(entry[1], f"{what}[{k}] hiding", ELEMENT_SIZE),
                _hex(entry[2], f"{what}[{k}] binding", ELEMENT_SIZE),
            )
        )
        previous = identifier
    if not entries:
        raise MessageError(f"{what}: empty")
    return tuple(entries)


def _commitments_to_hex(commitments: Sequence[frost.SigningCommitments]) -> str:
    return b"".join(c.hiding + c.binding for c in commitments).hex()


def split_commitments(data: bytes) -> tuple[frost.SigningCommitments, ...]:
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


def _to_dict(value: Any) -> Any:
    return value.to_dict()


INT = kind(_int)
HASH = kind(_reader(_hex, HASH_SIZE))
HASHES = kind(_reader(_id_map, HASH_SIZE), _id_map_to_json)
REASON = kind(_reader(_str, MAX_REASON), lambda reason: reason[:MAX_REASON])


# --- messages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every protocol message; ``session`` routes it (sessions.SessionRouter)."""

    TYPE: ClassVar[str] = ""
    CHANNELS: ClassVar[frozenset[str]] = frozenset()
    FIELDS: ClassVar[tuple[str, ...]] = ()
    """The JSON members besides ``type`` and ``session``, in order (from the declaration)."""

    session: str

    def fields(self) -> dict[str, object]:
        return {name: k.write(getattr(self, name)) for name, k in layout(type(self))}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> Message:
        return cls(session, **{name: k.read(obj[name], name) for name, k in layout(cls)})


_M = TypeVar("_M", bound=type[Message])
_REGISTRY: dict[str, type[Message]] = {}


def _register(cls: _M) -> _M:
    if cls.TYPE in _REGISTRY:
        raise RuntimeError(f"duplicate message type {cls.TYPE}")
    _REGISTRY[cls.TYPE] = cls
    cls.FIELDS = tuple(name for name, _ in layout(cls))
    return cls


# -- shared


@_register
@dataclass(frozen=True, slots=True)
class SessionAbort(Message):
    """A participant gives up on a DKG or resharing session, and says why (and whom)."""

    TYPE = "abort"
    CHANNELS = frozenset({CHANNEL_DKG, CHANNEL_RESHARE})

    culprit: int | None = field(metadata=kind(_culprit))
    reason: str = field(metadata=REASON)


@_register
@dataclass(frozen=True, slots=True)
class Refusal(Message):
    """A member declines a presignature or signing request; ``code`` is stable."""

    TYPE = "refusal"
    CHANNELS = frozenset({CHANNEL_PRESIGN, CHANNEL_SIGN})

    code: str = field(metadata=kind(_code))
    reason: str = field(metadata=REASON)


# -- key generation (protocols/dkg.py)


@_register
@dataclass(frozen=True, slots=True)
class DkgRound1(Message):
    TYPE = "dkg_round1"
    CHANNELS = frozenset({CHANNEL_DKG})

    package: Round1Package = field(metadata=kind(_crypto_reader(Round1Package.from_dict), _to_dict))


@_register
@dataclass(frozen=True, slots=True)
class DkgEcho(Message):
    """SHA-256 of every round-1 package as its sender saw it (dkg.round1_hash)."""

    TYPE = "dkg_echo"
    CHANNELS = frozenset({CHANNEL_DKG})

    hashes: Mapping[int, bytes] = field(metadata=HASHES)


@_register
@dataclass(frozen=True, slots=True)
class DkgRound2(Message):
    """The secret share f_i(j); travels only inside the mesh's TLS 1.3 connection."""

    TYPE = "dkg_round2"
    CHANNELS = frozenset({CHANNEL_DKG})

    share: Round2Package = field(
        repr=False,
        metadata=kind(_secret_hex(Round2Package.from_bytes), lambda p: p.signing_share.hex()),
    )


@_register
@dataclass(frozen=True, slots=True)
class DkgConfirm(Message):
    TYPE = "dkg_confirm"
    CHANNELS = frozenset({CHANNEL_DKG})

    public_key_package_hash: bytes = field(metadata=HASH)


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

    dealers: tuple[int, ...] = field(metadata=kind(_ascending_ids, list))
    old_public: PublicKeyPackage = field(
        metadata=kind(public_key_package_from_dict, public_key_package_to_dict)
    )


@_register
@dataclass(frozen=True, slots=True)
class ReshareDeal(Message):
    """A dealer's public package and the receiver's secret sub-share, in one message."""

    TYPE = "reshare_deal"
    CHANNELS = frozenset({CHANNEL_RESHARE})

    package: ResharePublicPackage = field(
        metadata=kind(_crypto_reader(ResharePublicPackage.from_dict), _to_dict)
    )
    sub_share: SubShare = field(
        repr=False, metadata=kind(_secret_hex(SubShare.from_bytes), lambda s: s.value.hex())
    )


@_register
@dataclass(frozen=True, slots=True)
class ReshareConfirm(Message):
    """A receiver's view: the new public package's hash and every dealer package's hash."""

    TYPE = "reshare_confirm"
    CHANNELS = frozenset({CHANNEL_RESHARE})

    public_key_package_hash: bytes = field(metadata=HASH)
    packages: Mapping[int, bytes] = field(metadata=HASHES)


# -- presignatures (protocols/presign.py)


@_register
@dataclass(frozen=True, slots=True)
class PresignRequest(Message):
    """The owner asks a member for ``count`` nonce commitments (ids ``<session>:<k>``)."""

    TYPE = "presign_request"
    CHANNELS = frozenset({CHANNEL_PRESIGN})

    domain_id: int = field(metadata=INT)
    epoch: int = field(metadata=INT)
    participants: tuple[int, ...] = field(metadata=kind(_reader(_ascending_ids, 1024), list))
    count: int = field(metadata=kind(_reader(_int, 1, MAX_BATCH)))


@_register
@dataclass(frozen=True, slots=True)
class PresignCommitments(Message):
    """A member's commitments for the batch, in id order."""

    TYPE = "presign_commitments"
    CHANNELS = frozenset({CHANNEL_PRESIGN})

    commitments: tuple[frost.SigningCommitments, ...] = field(
        metadata=kind(_commitment_run, _commitments_to_hex)
    )


@_register
@dataclass(frozen=True, slots=True)
class PresignConfirm(Message):
    """Every participant's commitments for the batch: members store them with their nonces."""

    TYPE = "presign_confirm"
    CHANNELS = frozenset({CHANNEL_PRESIGN})

    commitments: Mapping[int, tuple[frost.SigningCommitments, ...]] = field(
        metadata=kind(
            _presign_confirm,
            lambda commitments: [
                [p, _commitments_to_hex(commitments[p])] for p in sorted(commitments)
            ],
        )
    )


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

    request_id: int = field(metadata=INT)
    domain_id: int = field(metadata=INT)
    epoch: int = field(metadata=INT)
    payload: bytes = field(metadata=kind(_reader(_hex, maximum=MAX_PAYLOAD)))
    path: str = field(metadata=kind(_reader(_str, MAX_PATH)))
    caller: str = field(metadata=kind(_reader(_str, MAX_CALLER, allow_empty=False)))
    commitments: tuple[frost.CommitmentListEntry, ...] = field(
        metadata=kind(
            _commitment_list, lambda entries: [[i, h.hex(), b.hex()] for i, h, b in entries]
        )
    )


@_register
@dataclass(frozen=True, slots=True)
class SignShare(Message):
    TYPE = "sign_share"
    CHANNELS = frozenset({CHANNEL_SIGN})

    # canonicity is checked by frost.aggregate, which names the sender if it fails
    share: Scalar = field(metadata=kind(_reader(_hex, SCALAR_SIZE)))


MESSAGE_TYPES: Mapping[str, type[Message]] = dict(_REGISTRY)


# --- the codec -------------------------------------------------------------------------


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
        obj = parse_json(payload)
    except JsonError as exc:
        raise MessageError(f"not a JSON document: {exc}"[:120]) from None
    if not isinstance(obj, dict):
        raise MessageError("expected a JSON object")
    kind = obj.get("type")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError("unknown message type")
    if channel not in cls.CHANNELS:
        raise MessageError(f"message type {cls.TYPE} is not allowed on channel {channel[:32]!r}")
    missing, unknown = key_diff(obj, sorted({"type", "session", *cls.FIELDS}))
    if missing or unknown:
        unknown = [k[:32] for k in unknown][:5]
        raise MessageError(f"{cls.TYPE}: missing keys {missing}, unknown keys {unknown}")
    session = check_session_id(obj["session"])
    try:
        return cls.from_fields(session, obj)
    except MessageError as exc:
        raise MessageError(f"{cls.TYPE}: {exc}") from None
    except InvalidEncoding as exc:  # pragma: no cover - _crypto converts these already
        raise MessageError(f"{cls.TYPE}: {exc}") from None
